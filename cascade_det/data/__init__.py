"""Data: the embedded shapes dataset (registered on import), dataset checks, and the resumable training loader."""

from .checks import DatasetError, check_datasets
from .datasets import EMBEDDED_DATASETS, embedded_root, ensure_embedded_split, register_embedded_datasets
from .loader import ResumableTrainLoader, SampleReadError, build_train_loader, mapped_with_file_errors
from .shapes import SHAPE_CLASSES

register_embedded_datasets()

__all__ = [
    "EMBEDDED_DATASETS",
    "SHAPE_CLASSES",
    "DatasetError",
    "ResumableTrainLoader",
    "SampleReadError",
    "build_train_loader",
    "check_datasets",
    "embedded_root",
    "ensure_embedded_split",
    "mapped_with_file_errors",
    "register_embedded_datasets",
]
