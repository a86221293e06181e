"""Cascade Mask R-CNN R50-FPN 3x: the 3x multi-scale schedule with the mask head. Detectron2 publishes box 44.3 /
mask 38.5 for its own 3x recipe."""

from .cascade_mask_rcnn_R_50_FPN_1x import dataloader, model, optimizer  # noqa: F401
from .cascade_rcnn_R_50_FPN_3x import dataloader as _dataloader_3x
from .cascade_rcnn_R_50_FPN_3x import lr_multiplier, test, train  # noqa: F401

dataloader.train.mapper.augmentations = _dataloader_3x.train.mapper.augmentations
train.output_dir = "./output/coco_cascade_mask_rcnn_R_50_FPN_3x"
