"""Data: the embedded shapes dataset (registered on import) and dataset-file checks."""
from .datasets import (
    EMBEDDED_DATASETS,
    check_dataset_files,
    embedded_root,
    ensure_embedded_split,
    register_embedded_datasets,
)
from .shapes import SHAPE_CLASSES

register_embedded_datasets()

__all__ = [
    "EMBEDDED_DATASETS",
    "SHAPE_CLASSES",
    "check_dataset_files",
    "embedded_root",
    "ensure_embedded_split",
    "register_embedded_datasets",
]
