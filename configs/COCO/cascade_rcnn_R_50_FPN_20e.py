"""Cascade R-CNN R50-FPN, 20 epochs (lr x0.1 after 16 and 19). MMDetection publishes box AP 41.0."""

from ..common.coco_schedule import epoch_schedule
from .cascade_rcnn_R_50_FPN_1x import dataloader, model, optimizer, test, train

train.max_iter, lr_multiplier = epoch_schedule(epochs=20, step_epochs=[16, 19])
train.update(output_dir="./output/coco_cascade_rcnn_R_50_FPN_20e", eval_period=train.max_iter)
train.checkpointer.period = train.max_iter // 20
