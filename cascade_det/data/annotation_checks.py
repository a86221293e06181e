"""Checks of what annotations mean, run with the early dataset check (before anything is written; seconds at COCO
size): each finds a whole class of silent wrong results and either stops the run with a message naming the
dataset, the file and the first offenders, or returns a note (a count and the first few examples) for the run's
log.

  * `check_coco_json`: the file as written: image ids unique and of one type (int or str), every annotation with
    a list of 4 finite numbers as bbox, an int category_id, an image_id of an image in the file;
  * `check_boxes`: the boxes a dataset trains on: not finite, not positive, mostly outside their image, huge, or
    written as XYXY in an XYWH field (all of a dataset's boxes overflowing their images as XYWH while fitting as
    XYXY); a training set with no usable box, or whose every annotation is a crowd region, is refused;
  * `check_image_sample`: a sample of the image files (the first and some spread over the set) decodes, at the
    size the annotations give (EXIF orientation applied, as Detectron2 reads them).
"""

import json
import math
from typing import Dict, List, Sequence

import numpy as np

from detectron2.structures import BoxMode

from ..errors import Error

__all__ = ["AnnotationError", "DatasetError", "check_boxes", "check_coco_json", "check_image_sample"]

_EXAMPLES = 3
_SAMPLE = 16  # image files opened per dataset


class DatasetError(Error, ValueError):
    """A dataset a run is configured with cannot be used; the message names it and the fix."""


class AnnotationError(DatasetError):
    """Annotations that would train or evaluate something other than what they say; the message names the
    dataset, the file and the first offenders."""


def _first(items: Sequence, n: int = _EXAMPLES) -> str:
    return ", ".join(str(i) for i in items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_coco_json(path: str, name: str) -> List[str]:
    """Check the COCO json file `path` of dataset `name` as written (see the module docstring); returns notes."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise AnnotationError(f"Dataset {name!r} cannot be loaded from {path}: {type(e).__name__}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise AnnotationError(f"Dataset {name!r}: {path} is not a COCO file (no 'images' list at its top level)")
    images, annotations = data["images"], data.get("annotations") or []
    if not isinstance(annotations, list):
        raise AnnotationError(f"Dataset {name!r}: {path}: 'annotations' is a {type(annotations).__name__}, not a list")
    ids = [image.get("id") if isinstance(image, dict) else None for image in images]
    kinds = {type(i).__name__ for i in ids}
    if not kinds <= {"int", "str"}:
        bad = [f"#{k} ({ids[k]!r})" for k, i in enumerate(ids) if not isinstance(i, (int, str)) or isinstance(i, bool)]
        raise AnnotationError(f"Dataset {name!r}: {path}: images without an int or str 'id': {_first(bad)}")
    if len(kinds) > 1:
        number = next(i for i in ids if isinstance(i, int))
        text = next(i for i in ids if isinstance(i, str))
        raise AnnotationError(
            f"Dataset {name!r}: {path} mixes int and str image ids (e.g. {number} and {text!r}): write every id the "
            "same way"
        )
    seen: Dict = {}
    duplicates = []
    for image, image_id in zip(images, ids):
        if image_id in seen:
            duplicates.append(f"{image_id!r} ({seen[image_id]} and {image.get('file_name')})")
        else:
            seen[image_id] = image.get("file_name")
    if duplicates:
        raise AnnotationError(
            f"Dataset {name!r}: {path} has {len(duplicates)} duplicate image ids: {_first(duplicates)}. One image "
            "would get the other's annotations and the other would vanish: give every image its own id."
        )
    bad_fields, unknown_images = [], []
    for k, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            bad_fields.append(f"annotation #{k} is a {type(annotation).__name__}")
            continue
        where = f"annotation id {annotation.get('id', f'#{k}')!r}"
        bbox, category = annotation.get("bbox"), annotation.get("category_id")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_number(v) for v in bbox):
            bad_fields.append(f"{where}: bbox {bbox!r} (expected [x, y, width, height], 4 numbers)")
        if not isinstance(category, int) or isinstance(category, bool):
            bad_fields.append(f"{where}: category_id {category!r} (expected an int id of 'categories')")
        if annotation.get("image_id") not in seen:
            unknown_images.append(f"{where} (image_id {annotation.get('image_id')!r})")
    if bad_fields:
        raise AnnotationError(
            f"Dataset {name!r}: {path} has {len(bad_fields)} annotation fields of the wrong type: {_first(bad_fields)}"
        )
    notes = []
    if unknown_images:
        notes.append(
            f"Dataset {name!r}: {len(unknown_images)} annotations of {path} name an image id the file does not have "
            f"(ignored): {_first(unknown_images)}"
        )
    return notes


def _boxes_xyxy(dicts: Sequence[Dict]):
    """(boxes XYXY (N, 4) float64, as given (N, 4), is_xywh (N,), image sizes (N, 2) as width, height, crowd (N,),
    image file per box) of every axis-aligned absolute box of `dicts`."""
    given, xywh, sizes, crowd, files = [], [], [], [], []
    for d in dicts:
        for annotation in d.get("annotations", []):
            mode = annotation.get("bbox_mode", BoxMode.XYWH_ABS)
            if mode not in (BoxMode.XYWH_ABS, BoxMode.XYXY_ABS, 0, 1):
                continue
            box = annotation.get("bbox")
            try:
                values = [float(v) for v in box]
            except (TypeError, ValueError):
                raise AnnotationError(
                    f"image {d.get('file_name')}: bbox {box!r} is not 4 numbers (expected [x, y, width, height] or "
                    "[x0, y0, x1, y1], as its bbox_mode says)"
                ) from None
            if len(values) != 4:
                raise AnnotationError(f"image {d.get('file_name')}: bbox {box!r} has {len(values)} values, not 4")
            given.append(values)
            xywh.append(BoxMode(mode) == BoxMode.XYWH_ABS)
            sizes.append((d.get("width") or 0, d.get("height") or 0))
            crowd.append(bool(annotation.get("iscrowd", 0)))
            files.append(d.get("file_name"))
    given = np.asarray(given, dtype=np.float64).reshape(-1, 4)
    xywh = np.asarray(xywh, dtype=bool)
    boxes = given.copy()
    boxes[xywh, 2:] += boxes[xywh, :2]
    return boxes, given, xywh, np.asarray(sizes, dtype=np.float64).reshape(-1, 2), np.asarray(crowd, bool), files


def check_boxes(dicts: Sequence[Dict], name: str, source: str, split: str) -> List[str]:
    """Check the boxes of dataset `name` (its dicts, loaded from `source`; `split` "training" or "test"); returns
    notes, raises AnnotationError where the dataset cannot train what it says."""
    boxes, given, xywh, sizes, crowd, files = _boxes_xyxy(dicts)
    if not len(boxes):
        return []
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(boxes).all(axis=1)
        width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        positive = finite & (width > 0) & (height > 0)
        known = (sizes > 0).all(axis=1)
        inside_w = np.clip(np.minimum(boxes[:, 2], sizes[:, 0]) - np.maximum(boxes[:, 0], 0), 0, None)
        inside_h = np.clip(np.minimum(boxes[:, 3], sizes[:, 1]) - np.maximum(boxes[:, 1], 0), 0, None)
        inside = np.where(positive, inside_w * inside_h / np.where(positive, width * height, 1), 0)
        mostly_outside = positive & known & (inside < 0.5)
        huge = positive & known & ((width > 4 * sizes[:, 0]) | (height > 4 * sizes[:, 1]))
        # XYWH boxes that overflow their image as XYWH but fit it as XYXY: x1, y1 written where w, h belong.
        fits_as_xyxy = (given[:, 2] > given[:, 0]) & (given[:, 3] > given[:, 1])
        fits_as_xyxy &= (given[:, 2] <= sizes[:, 0] + 1) & (given[:, 3] <= sizes[:, 1] + 1)
        overflows = (boxes[:, 2] > sizes[:, 0] + 1) | (boxes[:, 3] > sizes[:, 1] + 1)
        looks_xyxy = xywh & known & finite & fits_as_xyxy & overflows
    where = f"Dataset {name!r} ({source})"
    if xywh.sum() >= 2 and looks_xyxy.sum() >= 0.5 * (xywh & known).sum():
        examples = [f"{files[i]}: {given[i].tolist()}" for i in np.flatnonzero(looks_xyxy)]
        raise AnnotationError(
            f"{where}: {int(looks_xyxy.sum())} of its {int(xywh.sum())} XYWH boxes overflow their image as "
            f"[x, y, width, height] but fit it as [x0, y0, x1, y1], e.g. {_first(examples)}: the boxes look like XYXY "
            "written in an XYWH field. Convert them to [x, y, width, height] (COCO's bbox), or register them with "
            "bbox_mode XYXY_ABS."
        )
    usable = positive & ~mostly_outside & ~crowd
    if split == "training" and crowd.all():
        raise AnnotationError(
            f"{where}: every one of its {len(boxes)} annotations is a crowd region (iscrowd=1), which training "
            "ignores: there is nothing to train on. Mark the objects iscrowd=0."
        )
    if split == "training" and not usable.any():
        raise AnnotationError(
            f"{where}: none of its {len(boxes)} boxes is usable for training (not finite, empty, or mostly outside "
            f"its image), e.g. {_first([f'{files[i]}: {given[i].tolist()}' for i in range(len(boxes))])}. Check the "
            "boxes' format and the images' width and height."
        )
    notes = []
    kinds = (
        (~finite, "are not finite (NaN or infinity): dropped"),
        (finite & ~positive, "have no area (width or height <= 0): dropped"),
        (mostly_outside, "lie mostly outside their image: clipped to it"),
        (huge, "are more than 4 times their image's size: clipped to it"),
        (looks_xyxy, "overflow their image as XYWH but fit it as XYXY (XYXY in an XYWH field?)"),
    )
    for mask, what in kinds:
        if mask.any():
            examples = [f"{files[i]}: {given[i].tolist()}" for i in np.flatnonzero(mask)]
            notes.append(f"{where}: {int(mask.sum())} of its {len(boxes)} boxes {what}, e.g. {_first(examples)}")
    return notes


def _sample(dicts: Sequence[Dict]) -> List[Dict]:
    """The first images and some spread evenly over the rest (deterministic)."""
    if len(dicts) <= _SAMPLE:
        return list(dicts)
    head = _SAMPLE // 2
    step = (len(dicts) - head) / (_SAMPLE - head)
    return list(dicts[:head]) + [dicts[head + math.floor(k * step)] for k in range(_SAMPLE - head)]


def check_image_sample(dicts: Sequence[Dict], name: str, skip_hint: str) -> None:
    """Decode a sample of dataset `name`'s image files; one that cannot be read, or whose size disagrees with its
    annotation (EXIF orientation applied, as Detectron2 does), is an error naming it (`skip_hint`: how to skip
    unreadable images instead)."""
    from PIL import Image, ImageOps

    for d in _sample(dicts):
        path = d["file_name"]
        try:
            with Image.open(path) as image:
                image.load()
                orientation = image.getexif().get(0x0112, 1)
                size = ImageOps.exif_transpose(image).size if orientation in (5, 6, 7, 8) else image.size
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise AnnotationError(
                f"Dataset {name!r}: image {path} cannot be read ({type(e).__name__}: {e}). Fix or remove it, or "
                f"{skip_hint}."
            ) from e
        expected = (d.get("width"), d.get("height"))
        if None not in expected and tuple(expected) != tuple(size):
            hint = (
                f" (its EXIF orientation {orientation} turns it; Detectron2 reads images turned)"
                if orientation in (5, 6, 7, 8)
                else ""
            )
            raise AnnotationError(
                f"Dataset {name!r}: image {path} is {size[0]}x{size[1]} but its annotation says "
                f"{expected[0]}x{expected[1]}{hint}: fix its width and height in the annotations"
            )
