"""Data: the embedded shapes dataset (registered on import), dataset checks, the resumable training loader, image
decoding as the eye sees it (`images`, applied to Detectron2's reader on import), and the augmentations the backbone
recipes add to Detectron2's (`RandomChoice`)."""

from .augmentations import RandomChoice
from .checks import DatasetError, check_datasets
from .datasets import EMBEDDED_DATASETS, embedded_root, ensure_embedded_split, register_embedded_datasets
from .images import patch_detectron2_reader, to_8bit
from .loader import ResumableTrainLoader, SampleReadError, build_train_loader, mapped_with_file_errors
from .shapes import SHAPE_CLASSES

register_embedded_datasets()
patch_detectron2_reader()  # 16-bit and float images read as OpenCV reads them, not clipped to white

__all__ = [
    "EMBEDDED_DATASETS",
    "RandomChoice",
    "SHAPE_CLASSES",
    "DatasetError",
    "ResumableTrainLoader",
    "SampleReadError",
    "build_train_loader",
    "check_datasets",
    "embedded_root",
    "ensure_embedded_split",
    "mapped_with_file_errors",
    "patch_detectron2_reader",
    "register_embedded_datasets",
    "to_8bit",
]
