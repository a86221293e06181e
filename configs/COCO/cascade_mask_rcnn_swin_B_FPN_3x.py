"""Cascade Mask R-CNN Swin-B FPN 3x: the Swin-T recipe (`cascade_mask_rcnn_swin_T_FPN_3x.py`) with Swin-B (embedding
128, 18 blocks in stage 3, 4-32 heads), drop path 0.3. Published: box AP 51.9 / mask AP 45.0 (Swin-Transformer-
Object-Detection README, ImageNet-1k initialisation). Initialise from swin_base_patch4_window7_224.pth."""

from .cascade_mask_rcnn_swin_T_FPN_3x import dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

model.backbone.bottom_up.update(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], drop_path_rate=0.3)
train.output_dir = "./output/coco_cascade_mask_rcnn_swin_B_FPN_3x"
