"""COCO 2017 loaders with the Swin / ConvNeXt detection recipes' augmentation (DETR's, via Sparse R-CNN): a flip, then
per image either a resize of the shorter side to one of 480, 512, ..., 800 (longer side at most 1333), or a resize
to 400 / 500 / 600, a random crop of 384-600 x 384-600 pixels and then the multi-scale resize. Instance masks on:
the recipes are Cascade Mask R-CNN. Otherwise `coco.py` (RGB, 16 images per batch)."""

from cascade_det.data import RandomChoice

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L

from .coco import dataloader

_MULTI_SCALE = L(T.ResizeShortestEdge)(
    short_edge_length=tuple(range(480, 801, 32)), max_size=1333, sample_style="choice"
)
dataloader.train.mapper.update(
    augmentations=[
        L(T.RandomFlip)(horizontal=True),
        L(RandomChoice)(
            choices=[
                [_MULTI_SCALE],
                [
                    L(T.ResizeShortestEdge)(short_edge_length=(400, 500, 600), max_size=1333, sample_style="choice"),
                    L(T.RandomCrop)(crop_type="absolute_range", crop_size=(384, 600)),
                    _MULTI_SCALE,
                ],
            ]
        ),
    ],
    use_instance_mask=True,
)
dataloader.evaluator.tasks = ("bbox", "segm")
