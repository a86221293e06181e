"""Cascade R-CNN R18-FPN for your own data: configs/Custom/cascade_rcnn_R_50_FPN.py with a ResNet-18 backbone,
for small datasets and CPUs (about a third of R-50's backbone FLOPs; no published COCO number for this pair).
Initialise from torchvision's ImageNet ResNet-18 file:

    python train_net.py --register-voc trees_train data/trees train --register-voc trees_val data/trees val \
        --config-file configs/Custom/cascade_rcnn_R_18_FPN.py \
        dataloader.train.dataset.names=trees_train dataloader.test.dataset.names=trees_val \
        train.init_checkpoint=/path/to/resnet18-f37072fd.pth

Any depth is one override on any of these configs: model.backbone.bottom_up.stages.depth=18|34|50|101|152.
"""

from .cascade_rcnn_R_50_FPN import dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

model.backbone.bottom_up.stages.depth = 18
train.output_dir = "./output/custom_cascade_rcnn_R_18_FPN"
