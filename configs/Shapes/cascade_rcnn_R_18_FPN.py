"""The quickstart: Cascade R-CNN, ResNet-18-FPN trained from scratch on the embedded shapes dataset, on the CPU.

    python train_net.py --config-file configs/Shapes/cascade_rcnn_R_18_FPN.py

Derived from the common Cascade R-CNN R50-FPN model; what differs is what a 128x128, 4-class dataset and a
from-scratch backbone need: R-18 with trainable BN, FPN of 64 channels, small anchors, fewer proposals and
RoIs, two 256-d FCs per stage. `cascade_rcnn_R_18_FPN.yaml` is the same model and schedule for yacs users, and
`faster_rcnn_R_18_FPN.py` the same detector without the cascade (tests/test_configs.py keeps the three in step).
"""

import torch
from fvcore.common.param_scheduler import MultiStepParamScheduler

from cascade_det.modeling import lazy_cascade_stages

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.solver import WarmupParamScheduler
from detectron2.solver.build import get_default_optimizer_params

from ..common.data.shapes import dataloader
from ..common.models.cascade_rcnn_fpn import model
from ..common.train import test, train

CHANNELS = 64

_bottom_up = model.backbone.bottom_up
_bottom_up.stem.norm = "BN"
_bottom_up.stages.depth = 18
_bottom_up.stages.norm = "BN"
model.backbone.out_channels = CHANNELS
model.pixel_std = [57.375, 57.120, 58.395]  # unit-variance input: BN trains from scratch here

_rpn = model.proposal_generator
_rpn.head.in_channels = CHANNELS
_rpn.anchor_generator.sizes = [[12], [24], [48], [96], [192]]
_rpn.batch_size_per_image = 128
_rpn.pre_nms_topk = (600, 300)
_rpn.post_nms_topk = (300, 150)

model.roi_heads.num_classes = 4
model.roi_heads.batch_size_per_image = 32
model.roi_heads.update(
    **lazy_cascade_stages(pooled_shape=ShapeSpec(channels=CHANNELS, height=7, width=7), fc_dims=(256, 256))
)

train.update(
    output_dir="./output/shapes_cascade_rcnn_R_18_FPN",
    max_iter=600,
    eval_period=600,
    log_period=50,
    device="cpu",
    seed=0,
    per_stage_eval=True,  # also report each stage's AP (and a plot) at every evaluation
)
train.checkpointer.update(period=300, max_to_keep=2)
# Test-time augmentation at this dataset's scale (off unless test.aug.enabled=True): 96 to 160 pixels, and flipped.
test.aug.update(min_sizes=[96, 128, 160], max_size=400)

# AdamW converges in far fewer iterations than SGD when training from scratch, which a CPU budget needs.
optimizer = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(weight_decay_norm=0.0), lr=1e-3, weight_decay=0.05
)

lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[430, 560, 600]),
    warmup_length=50 / 600,
    warmup_factor=0.001,
)
