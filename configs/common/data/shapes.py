"""Loaders for the embedded shapes dataset (128x128 images, 4 classes; see cascade_det/data/shapes.py).

Images are resized to a short side of 128 (at most 128 long) for training and test, so that a model trained here
sees other images at the scale it learned (a no-op on the dataset's own 128x128 images); training adds horizontal
flips. The training loader resumes exactly (`cascade_det.data.build_train_loader`).
"""

from omegaconf import OmegaConf

from cascade_det.data import build_train_loader

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.data import DatasetMapper, build_detection_test_loader, get_detection_dataset_dicts
from detectron2.evaluation import COCOEvaluator

IMAGE_SIZE = 128

dataloader = OmegaConf.create()
dataloader.train = L(build_train_loader)(
    dataset=L(get_detection_dataset_dicts)(names="cascade_shapes_train"),
    mapper=L(DatasetMapper)(
        is_train=True,
        augmentations=[
            L(T.ResizeShortestEdge)(short_edge_length=IMAGE_SIZE, max_size=IMAGE_SIZE),
            L(T.RandomFlip)(horizontal=True),
        ],
        image_format="BGR",
        use_instance_mask=False,
    ),
    total_batch_size=8,
    num_workers=1,
    skip_unreadable_images=False,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="cascade_shapes_val", filter_empty=False),
    mapper=L(DatasetMapper)(
        is_train=False,
        augmentations=[L(T.ResizeShortestEdge)(short_edge_length=IMAGE_SIZE, max_size=IMAGE_SIZE)],
        image_format="${...train.mapper.image_format}",
    ),
    num_workers=1,
)
dataloader.evaluator = L(COCOEvaluator)(dataset_name="${..test.dataset.names}", tasks=("bbox",))
