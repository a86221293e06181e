"""COCO 2017 loaders with ViTDet's large-scale jitter (LSJ; `projects/ViTDet/configs/common/coco_loader_lsj.py`): a
flip, a resize by a random 0.1-2.0 of the scale that fits the image in 1024x1024 (aspect ratio kept), a random crop
to at most 1024x1024 (not padded here: the backbone pads every image to its 1024 square), boxes recomputed from the
cropped masks; 64 images per batch. Test images: longer side 1024. Otherwise `coco.py` (RGB, instance masks on:
the ViTDet recipes are Cascade Mask R-CNN)."""

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .coco import dataloader

IMAGE_SIZE = 1024  # pixels: the square the images are jittered around and padded to

dataloader.train.mapper.update(
    augmentations=[
        L(T.RandomFlip)(horizontal=True),
        L(T.ResizeScale)(min_scale=0.1, max_scale=2.0, target_height=IMAGE_SIZE, target_width=IMAGE_SIZE),
        L(T.FixedSizeCrop)(crop_size=(IMAGE_SIZE, IMAGE_SIZE), pad=False),
    ],
    use_instance_mask=True,
    recompute_boxes=True,  # a crop cuts boxes: their tight boxes come from the cropped masks
)
dataloader.train.total_batch_size = 64
dataloader.test.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=IMAGE_SIZE, max_size=IMAGE_SIZE)]
dataloader.evaluator.tasks = ("bbox", "segm")
