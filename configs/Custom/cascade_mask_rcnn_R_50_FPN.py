"""Cascade Mask R-CNN R50-FPN for your own data with instance masks (COCO-json polygons or RLE, e.g. a labelme
export): configs/Custom/cascade_rcnn_R_50_FPN.py plus one mask head per stage, as
configs/COCO/cascade_mask_rcnn_R_50_FPN_1x.py adds them (MMDetection's recipe: box 41.2 / mask 35.9 on COCO).

    python train_net.py --register-coco my_train train.json images/ --register-coco my_val val.json images/ \
        --config-file configs/Custom/cascade_mask_rcnn_R_50_FPN.py \
        dataloader.train.dataset.names=my_train dataloader.test.dataset.names=my_val \
        train.init_checkpoint=/path/to/resnet50-0676ba61.pth
"""

from ..common.models.mask_head import add_mask_heads
from .cascade_rcnn_R_50_FPN import dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

add_mask_heads(model, dataloader)
train.output_dir = "./output/custom_cascade_mask_rcnn_R_50_FPN"
