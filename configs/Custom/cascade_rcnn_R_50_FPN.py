"""Cascade R-CNN R50-FPN for your own data: MMDetection's recipe (configs/COCO/cascade_rcnn_R_50_FPN_1x.py) with the
datasets, the number of classes and the schedule left to the command line.

    python train_net.py --num-gpus 8 \
        --register-coco my_train /data/my/train.json /data/my/images \
        --register-coco my_val /data/my/val.json /data/my/images \
        --config-file configs/Custom/cascade_rcnn_R_50_FPN.py \
        dataloader.train.dataset.names=my_train dataloader.test.dataset.names=my_val \
        train.init_checkpoint=/path/to/resnet50-0676ba61.pth train.max_iter=9000

  * datasets: registered with --register-coco / --register-voc (or your own code), named here;
  * number of classes: the training set's categories, unless model.roi_heads.num_classes is set (a mismatch is an
    error before training);
  * initialisation: torchvision's ImageNet ResNet-50 file, or a COCO Cascade R-CNN checkpoint of this model (ours,
    Detectron2's or MMDetection's): its class-dependent layers are re-initialised for your classes, and logged;
  * schedule: train.max_iter iterations at 16 images (default 9,000: 12 epochs of 12,000 images; set 12 x your
    images / 16 for MMDetection's 12 epochs), lr x0.1 after 8/12 and 11/12 of them, whatever max_iter is.
"""

from fvcore.common.param_scheduler import MultiStepParamScheduler

from detectron2.config import LazyCall as L
from detectron2.solver import WarmupParamScheduler

from ..COCO.cascade_rcnn_R_50_FPN_1x import dataloader, model, optimizer, test, train

dataloader.train.dataset.names = []
dataloader.test.dataset.names = []
model.roi_heads.num_classes = None  # from the registered training set's categories
train.update(
    max_iter=9000,
    eval_period=3000,
    output_dir="./output/custom_cascade_rcnn_R_50_FPN",
)
train.checkpointer.period = 1000
# In twelfths of the run (MMDetection's 1x shape), so that it follows train.max_iter.
lr_multiplier = L(WarmupParamScheduler)(
    scheduler=L(MultiStepParamScheduler)(values=[1.0, 0.1, 0.01], milestones=[8, 11], num_updates=12),
    warmup_length=500 / 9000,
    warmup_method="linear",
    warmup_factor=0.001,
)
