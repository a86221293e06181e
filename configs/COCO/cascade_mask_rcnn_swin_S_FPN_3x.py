"""Cascade Mask R-CNN Swin-S FPN 3x: the Swin-T recipe (`cascade_mask_rcnn_swin_T_FPN_3x.py`) with Swin-S (18 blocks
in stage 3). Published: box AP 51.9 / mask AP 45.0 (Swin-Transformer-Object-Detection README). Initialise from
swin_small_patch4_window7_224.pth."""

from .cascade_mask_rcnn_swin_T_FPN_3x import dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

model.backbone.bottom_up.depths = [2, 2, 18, 2]
train.output_dir = "./output/coco_cascade_mask_rcnn_swin_S_FPN_3x"
