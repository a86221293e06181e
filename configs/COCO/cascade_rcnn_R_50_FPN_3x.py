"""Cascade R-CNN R50-FPN, 36 epochs (lr x0.1 after 27 and 33) with multi-scale training (short side 640-800,
as Detectron2's 3x baselines)."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from ..common.coco_schedule import epoch_schedule
from .cascade_rcnn_R_50_FPN_1x import dataloader, model, optimizer, test, train

dataloader.train.mapper.augmentations[0] = L(T.ResizeShortestEdge)(
    short_edge_length=(640, 672, 704, 736, 768, 800), sample_style="choice", max_size=1333
)
train.max_iter, lr_multiplier = epoch_schedule(epochs=36, step_epochs=[27, 33])
train.update(output_dir="./output/coco_cascade_rcnn_R_50_FPN_3x", eval_period=train.max_iter)
train.checkpointer.period = train.max_iter // 36
