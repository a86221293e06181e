"""Epoch-based step schedules as MMDetection writes them (e.g. 12 epochs, lr x0.1 after epochs 8 and 11), in
Detectron2 iterations. COCO train2017 has 117,266 images with annotations (the ones a training epoch sees)."""

import math

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

COCO_TRAIN_IMAGES = 117266


def epoch_schedule(epochs, step_epochs, batch_size=16, warmup_iters=500, images_per_epoch=COCO_TRAIN_IMAGES):
    """Returns (max_iter, lr_multiplier): lr x0.1 after each of `step_epochs`, linear warm-up from 0.001 over
    `warmup_iters` (MMDetection's defaults). As mmengine's LinearLR(begin=0, end=warmup_iters) does, the warm-up
    reaches the full lr at iteration warmup_iters - 1."""
    iters_per_epoch = math.ceil(images_per_epoch / batch_size)
    max_iter = epochs * iters_per_epoch
    lr_multiplier = L(WarmupParamScheduler)(
        scheduler=L(MultiStepParamScheduler)(
            values=[0.1**k for k in range(len(step_epochs) + 1)],
            milestones=[e * iters_per_epoch for e in step_epochs] + [max_iter],
        ),
        warmup_length=(warmup_iters - 1) / max_iter,
        warmup_method="linear",
        warmup_factor=0.001,
    )
    return max_iter, lr_multiplier
