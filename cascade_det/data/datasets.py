"""Registration of the embedded shapes dataset.

The embedded splits are registered under the same COCO-json path COCO itself uses (`load_coco_json` with the
metadata `register_coco_instances` sets), and generated on first use into `$CASCADE_DET_DATASETS`
(default `~/.cache/cascade_det/datasets`), read when `cascade_det` is imported.
"""

import os

from iopath.common.file_io import file_lock

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

from .shapes import SHAPE_CLASSES, write_shapes_split

__all__ = ["EMBEDDED_DATASETS", "embedded_root", "ensure_embedded_split", "register_embedded_datasets"]

DATASETS_ENV = "CASCADE_DET_DATASETS"
# Bump the folder version when the generator changes, so stale caches are not reused.
_VERSION = "shapes_v2"
# name -> (split, number of images, seed)
EMBEDDED_DATASETS = {
    "cascade_shapes_train": ("train", 800, 0),
    "cascade_shapes_val": ("val", 200, 1),
}


def embedded_root() -> str:
    base = os.environ.get(DATASETS_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "cascade_det", "datasets")
    return os.path.join(base, _VERSION)


def ensure_embedded_split(name: str, root: str = None) -> str:
    """Generate the split under `root` (default: where it was registered) if its json is missing, once across
    processes; return the json path."""
    split, num_images, seed = EMBEDDED_DATASETS[name]
    root = root or _registered_root or embedded_root()
    json_path = os.path.join(root, "annotations", f"instances_{split}.json")
    if os.path.isfile(json_path):
        return json_path
    try:
        os.makedirs(root, exist_ok=True)
        with file_lock(json_path):
            if not os.path.isfile(json_path):
                write_shapes_split(root, split, num_images, seed)
    except OSError as e:
        raise OSError(
            f"Cannot write the embedded dataset '{name}' to {root}: {e}. Point ${DATASETS_ENV} at a writable folder."
        ) from e
    return json_path


def _load_embedded(name: str, root: str):
    split = EMBEDDED_DATASETS[name][0]
    return load_coco_json(ensure_embedded_split(name, root), os.path.join(root, split), name)


_registered_root = None


def register_embedded_datasets() -> None:
    """Register the embedded splits under `embedded_root()` as it is now (idempotent). Nothing is generated until a
    split is first loaded."""
    global _registered_root
    for name, (split, _, _) in EMBEDDED_DATASETS.items():
        if name in DatasetCatalog.list():
            continue
        root = _registered_root = embedded_root()
        DatasetCatalog.register(name, lambda name=name, root=root: _load_embedded(name, root))
        MetadataCatalog.get(name).set(
            json_file=os.path.join(root, "annotations", f"instances_{split}.json"),
            image_root=os.path.join(root, split),
            evaluator_type="coco",
            thing_classes=list(SHAPE_CLASSES),
            thing_dataset_id_to_contiguous_id={i + 1: i for i in range(len(SHAPE_CLASSES))},
        )
