"""Cascade R-CNN R101-FPN 1x (MMDetection's recipe). MMDetection publishes box AP 42.0."""

from .cascade_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

model.backbone.bottom_up.stages.depth = 101
train.output_dir = "./output/coco_cascade_rcnn_R_101_FPN_1x"
