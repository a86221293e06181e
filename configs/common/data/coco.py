"""COCO 2017 loaders in MMDetection's 1x pipeline: 1333x800 single scale, horizontal flip, RGB, 16 images/batch.

The datasets are Detectron2's builtin registrations (`coco_2017_train`, `coco_2017_val`) under
$DETECTRON2_DATASETS (default ./datasets): coco/annotations/instances_{train,val}2017.json, coco/train2017/,
coco/val2017/. train_net.py checks them before it starts and says where it looked. The training loader is
Detectron2's with an exact position on --resume (`cascade_det.data.build_train_loader`).
"""

from cascade_det.data import build_train_loader

import detectron2.data.transforms as T
from detectron2 import model_zoo
from detectron2.config import LazyCall as L

dataloader = model_zoo.get_config("common/data/coco.py").dataloader
dataloader.train._target_ = build_train_loader

dataloader.train.mapper.update(
    augmentations=[
        L(T.ResizeShortestEdge)(short_edge_length=800, max_size=1333),
        L(T.RandomFlip)(horizontal=True),
    ],
    image_format="RGB",  # torchvision-style ImageNet weights expect RGB
    use_instance_mask=False,
)
dataloader.train.total_batch_size = 16
dataloader.evaluator.tasks = ("bbox",)
