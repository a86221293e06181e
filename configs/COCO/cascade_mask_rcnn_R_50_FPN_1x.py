"""Cascade Mask R-CNN R50-FPN 1x, MMDetection v3.3.0's `cascade-mask-rcnn_r50_fpn_1x_coco` recipe: the box
recipe of cascade_rcnn_R_50_FPN_1x plus one mask head per stage (head t trains on stage t's RoIs, its loss times
the stage weight; at test the heads' mask probabilities for the final boxes are averaged). Published: MMDetection
box 41.2 / mask 35.9; Detectron2's own recipe box 42.1 / mask 36.4.

Detectron2's (and the authors') variant, one mask head trained on stage-0 RoIs:
    model.roi_heads.mask_head = <one MaskRCNNConvUpsampleHead>   (mask_train_stage=2: on the last stage's RoIs)
"""

from ..common.models.mask_head import add_mask_heads
from .cascade_rcnn_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

add_mask_heads(model, dataloader)  # one mask head per stage
train.output_dir = "./output/coco_cascade_mask_rcnn_R_50_FPN_1x"
