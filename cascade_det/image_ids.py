"""Integer image ids for COCO evaluation of datasets whose image ids are strings.

Pascal VOC (Detectron2's `load_voc_instances`) and many COCO exports id their images by file stem
("2019_YELL_0001"). pycocotools takes any hashable id, but the C++ evaluators (faster-coco-eval, Detectron2's
`COCOeval_opt`) and our detection arrays (one float row per box) take integers only. These helpers number such ids
the same way everywhere (evaluation during training, `python -m cascade_det.evaluate`), so the numbers of two
evaluations of one ground truth agree.
"""

import contextlib
import io
from numbers import Integral
from typing import Dict, Hashable, Iterable

__all__ = ["coco_with_integer_image_ids", "dataset_image_numbers", "integer_image_ids", "with_integer_image_ids"]


def integer_image_ids(image_ids: Iterable[Hashable]) -> Dict[Hashable, int]:
    """{id: integer} for ground truth with some image id that is not an integer; {} when all are integers (nothing
    to change). Integer ids keep their value; the others are numbered after the largest integer, in their order."""
    image_ids = list(image_ids)
    if all(isinstance(i, Integral) and not isinstance(i, bool) for i in image_ids):
        return {}
    integers = [int(i) for i in image_ids if isinstance(i, Integral) and not isinstance(i, bool)]
    mapping, next_id = {}, max(integers, default=0) + 1
    for i in image_ids:
        if i in mapping:
            continue
        if isinstance(i, Integral) and not isinstance(i, bool):
            mapping[i] = int(i)
        else:
            mapping[i], next_id = next_id, next_id + 1
    return mapping


def dataset_image_numbers(dataset: dict) -> Dict[Hashable, int]:
    """`integer_image_ids` of the images of a COCO-format dict ({} when they are all integers)."""
    return integer_image_ids(im["id"] for im in dataset.get("images", []))


def with_integer_image_ids(dataset: dict, mapping: Dict[Hashable, int]) -> dict:
    """A copy of a COCO-format dict (ground truth, or loadRes's results) with `images[].id` and
    `annotations[].image_id` mapped through `mapping` (`integer_image_ids`); the input is not changed."""
    if not mapping:
        return dataset
    out = dict(dataset)
    out["images"] = [{**im, "id": mapping[im["id"]]} for im in dataset.get("images", [])]
    out["annotations"] = [{**a, "image_id": mapping[a["image_id"]]} for a in dataset.get("annotations", [])]
    return out


def coco_with_integer_image_ids(coco, mapping: Dict[Hashable, int]):
    """A new COCO object of `coco`'s class (pycocotools' or faster-coco-eval's), its dataset mapped by
    `with_integer_image_ids` and indexed."""
    if not mapping:
        return coco
    new = type(coco)()
    new.dataset = with_integer_image_ids(coco.dataset, mapping)
    with contextlib.redirect_stdout(io.StringIO()):
        new.createIndex()
    return new
