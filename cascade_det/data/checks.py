"""Dataset checks that run before a model is built: a run with a dataset it cannot use stops in seconds, with a
message naming the dataset, the file and the fix, instead of failing after training.

Checked for every dataset a run uses: it is registered, its files exist, it loads, it has images (and, for
training, annotations), every image file exists (existence only, so COCO's 118k images take seconds), every
annotation's category id is one of the dataset's categories, and what the annotations mean
(`annotation_checks`: the COCO file as written, the boxes, a decoded sample of the images at their annotated
sizes). What is worth knowing but does not stop the run comes back as notes for the run's log.
"""

import difflib
import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..errors import MissingFileError
from .annotation_checks import AnnotationError, DatasetError, check_boxes, check_coco_json, check_image_sample
from .datasets import EMBEDDED_DATASETS, ensure_embedded_split

logger = logging.getLogger(__name__)
_checked_json: Dict[Tuple[str, float, int], List[str]] = {}  # (path, mtime, size) -> its notes

__all__ = ["DatasetError", "check_datasets"]

_BUILTIN_PREFIXES = ("coco_", "keypoints_coco_", "lvis_", "cityscapes_", "voc_")


def check_datasets(
    names: Sequence[str],
    *,
    split: str,
    key: str,
    notes: Optional[List[str]] = None,
    skip_hint: str = "",
    skip_unreadable: bool = False,
) -> List[str]:
    """Check the datasets `names` (the `split`, "training" or "test", of a run, configured under the config key
    `key`); return their category names (thing_classes), which must agree among them. What does not stop the run
    is appended to `notes` (logged here when None). `skip_hint` says how to skip unreadable images; with
    `skip_unreadable` (that option is on) an unreadable image of the sample is a note, not an error."""
    classes = None
    found: List[str] = []
    for name in names:
        dataset_classes = _check_one(name, split, key, found, skip_hint, skip_unreadable)
        if classes is not None and dataset_classes is not None and dataset_classes != classes:
            raise DatasetError(
                f"The {split} datasets of {key} have different categories: {names[0]!r} has {len(classes)} "
                f"({', '.join(classes[:5])}...), {name!r} has {len(dataset_classes)}: train and test on one label set"
            )
        classes = classes if classes is not None else dataset_classes
    if notes is None:
        for note in found:
            logger.warning(note)
    else:
        notes.extend(found)
    return classes or []


def _json_notes(path: str, name: str) -> List[str]:
    stat = os.stat(path)
    cache_key = (os.path.abspath(path), stat.st_mtime, stat.st_size)
    if cache_key not in _checked_json:
        _checked_json[cache_key] = check_coco_json(path, name)
    return _checked_json[cache_key]


def _check_one(name: str, split: str, key: str, notes: List[str], skip_hint: str, skip_unreadable: bool):
    if name in EMBEDDED_DATASETS:
        ensure_embedded_split(name)
    registered = DatasetCatalog.list()
    if name not in registered:
        close = difflib.get_close_matches(name, registered, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise DatasetError(
            f"{key}: dataset {name!r} is not registered.{hint} Register COCO-json data with train_net.py "
            f"--register-coco {name} JSON IMAGE_ROOT (or detectron2.data.datasets.register_coco_instances)."
        )
    metadata = MetadataCatalog.get(name)
    for attribute in ("json_file", "image_root"):
        path = getattr(metadata, attribute, None)
        if path is None or os.path.exists(path):
            continue
        if name.startswith(_BUILTIN_PREFIXES):
            hint = (
                "Detectron2's builtin datasets live under $DETECTRON2_DATASETS (now "
                f"{os.environ.get('DETECTRON2_DATASETS', 'unset, so ./datasets')}), e.g. coco/annotations/, "
                "coco/train2017/, coco/val2017/: set it to the folder that holds them"
            )
        else:
            hint = "fix the path it was registered with (--register-coco / register_coco_instances)"
        raise MissingFileError(f"Dataset {name!r}: {attribute} {path} does not exist; {hint}.")
    source = getattr(metadata, "json_file", None) or "its registered loader"
    json_file = getattr(metadata, "json_file", None)
    if json_file and str(json_file).endswith(".json") and os.path.isfile(json_file):
        notes.extend(_json_notes(json_file, name))  # before Detectron2 reads it: what it would hide (duplicate ids)
    try:
        dicts = DatasetCatalog.get(name)
    except AnnotationError:
        raise
    except Exception as e:
        raise DatasetError(f"Dataset {name!r} cannot be loaded from {source}: {type(e).__name__}: {e}") from e
    if not dicts:
        raise DatasetError(f"Dataset {name!r} ({source}) has no images: {key} needs a dataset with images.")
    if split == "training" and not any(d.get("annotations") for d in dicts):
        raise DatasetError(f"Dataset {name!r} ({source}) has no annotations: it cannot train a detector ({key}).")
    missing = [d["file_name"] for d in dicts if not os.path.isfile(d["file_name"])]
    if missing:
        raise MissingFileError(
            f"Dataset {name!r}: {len(missing)} of its {len(dicts)} image files do not exist, e.g. {missing[0]} "
            f"(image_root {getattr(metadata, 'image_root', '?')}); fix the image root it was registered with."
        )
    classes = list(getattr(metadata, "thing_classes", []) or [])
    if classes:
        for d in dicts:
            for annotation in d.get("annotations", []):
                category = annotation.get("category_id")
                if not isinstance(category, int) or not 0 <= category < len(classes):
                    raise DatasetError(
                        f"Dataset {name!r}: image {d['file_name']} has an annotation of category id {category!r}, "
                        f"not one of its {len(classes)} categories ({source})."
                    )
    try:
        notes.extend(check_boxes(dicts, name, source, split))
    except AnnotationError as e:
        raise AnnotationError(str(e) if str(e).startswith("Dataset") else f"Dataset {name!r} ({source}): {e}") from None
    try:
        check_image_sample(dicts, name, skip_hint or "skip unreadable images")
    except AnnotationError as e:
        if not (skip_unreadable and "cannot be read" in str(e)):
            raise
        notes.append(f"{e} (will be skipped)")
    return classes or None
