"""Cascade Mask R-CNN Swin-T FPN 3x: Swin-Transformer-Object-Detection's
`cascade_mask_rcnn_swin_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco` recipe. Published: box AP
50.4 / mask AP 43.7 on COCO val2017 (its README; 8 GPUs x 2 images). The Swin and ConvNeXt configs derive from this
file. What it changes from the R50 recipe (`cascade_mask_rcnn_R_50_FPN_1x.py`, MMDetection's, whose RPN, cascade
sampling, stage loss weights and per-stage mask heads it keeps):
  backbone   Swin-T (`cascade_det.modeling.SwinTransformer`: timm's modules, the detection version's padding and
             output norms), drop path 0.2, nothing frozen; FPN on its p0..p3
  box heads  per stage 4 3x3 convolutions of 256 channels with SyncBN and one fc of 1024 ("4conv1fc"),
             class-specific regression, GIoU loss x10 on the decoded boxes
  data       flip, then multi-scale 480-800 or (400-600, 384-600 crop, 480-800) (`common/data/coco_multiscale_crop`)
  optimizer  AdamW lr 1e-4, betas (0.9, 0.999), weight decay 0.05, none on norms and relative-position tables
  schedule   36 epochs, lr x0.1 after epochs 27 and 33, 500 linear warm-up iterations; mixed precision (AMP)
Initialise from the official ImageNet file (train.init_checkpoint=/path/to/swin_tiny_patch4_window7_224.pth, renamed
on load); a published Swin-Transformer-Object-Detection detector (.pth) loads the same way, converted.
"""

import torch

from cascade_det.modeling import SwinTransformer, lazy_cascade_stages

from detectron2.config import LazyCall as L
from detectron2.solver import get_default_optimizer_params

from ..common.coco_schedule import epoch_schedule
from ..common.data.coco_multiscale_crop import dataloader
from .cascade_mask_rcnn_R_50_FPN_1x import model, test, train
from .cascade_rcnn_R_50_FPN_1x import TARGET_STDS

model.backbone.bottom_up = L(SwinTransformer)(
    embed_dim=96,
    depths=[2, 2, 6, 2],
    num_heads=[3, 6, 12, 24],
    window_size=7,
    drop_path_rate=0.2,
    out_features=["p0", "p1", "p2", "p3"],
)
model.backbone.in_features = "${.bottom_up.out_features}"
model.roi_heads.update(
    **lazy_cascade_stages(
        bbox_reg_weights=[tuple(1.0 / s for s in stds) for stds in TARGET_STDS],
        conv_dims=[256] * 4,
        fc_dims=[1024],
        conv_norm="SyncBN",
        cls_agnostic_bbox_reg=False,
        box_reg_loss_type="giou",
        loss_weight={"loss_box_reg": 10.0},
    )
)

optimizer = L(torch.optim.AdamW)(
    params=L(get_default_optimizer_params)(
        base_lr="${..lr}",
        weight_decay_norm=0.0,
        overrides={"relative_position_bias_table": {"weight_decay": 0.0}},
    ),
    lr=1e-4,
    betas=(0.9, 0.999),
    weight_decay=0.05,
)

train.max_iter, lr_multiplier = epoch_schedule(epochs=36, step_epochs=[27, 33])
train.update(output_dir="./output/coco_cascade_mask_rcnn_swin_T_FPN_3x", eval_period=train.max_iter)
train.amp.enabled = True
train.checkpointer.period = train.max_iter // 36
