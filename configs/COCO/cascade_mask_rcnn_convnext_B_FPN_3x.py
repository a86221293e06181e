"""Cascade Mask R-CNN ConvNeXt-B FPN 3x: the ConvNeXt-T recipe (`cascade_mask_rcnn_convnext_T_FPN_3x.py`) with
ConvNeXt-B (128-1024 channels, 27 blocks in stage 3), drop path 0.7, layer-wise lr decay 0.8 over 12 layers.
Published: box AP 52.7 / mask AP 45.6 (facebookresearch/ConvNeXt object_detection README, ImageNet-1k). Initialise
from convnext_base_1k_224_ema.pth."""

from cascade_det.modeling.backbones import convnext_layer_decay

from detectron2.config import LazyCall as L

from .cascade_mask_rcnn_convnext_T_FPN_3x import dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

model.backbone.bottom_up.update(depths=[3, 3, 27, 3], dims=[128, 256, 512, 1024], drop_path_rate=0.7)
optimizer.params.lr_factor_func = L(convnext_layer_decay)(decay_rate=0.8, num_layers=12)
train.output_dir = "./output/coco_cascade_mask_rcnn_convnext_B_FPN_3x"
