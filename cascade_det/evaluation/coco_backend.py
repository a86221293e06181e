"""The COCO evaluation backends: faster-coco-eval (C++, the same numbers as pycocotools), pycocotools, and for
boxes `vectorized` (`vectorized_coco`: COCOeval with array operations, the same numbers, for per-stage evaluation).

Detectron2's `COCOEvaluator` evaluates with its C++ `COCOeval_opt` when `use_fast_impl=True` (its default), which a
pure-Python Detectron2 install does not have; `cascade_det.compat` puts faster-coco-eval's `COCOeval_faster` there,
so `use_fast_impl` keeps its meaning: True is the fast backend, False pycocotools. The run option
`train.eval_backend` / `TEST.EVAL_BACKEND` ("faster-coco-eval" or "pycocotools") sets it for the COCO and the
per-stage evaluators alike.

Per-stage evaluation scores 4 sets of boxes against one ground truth: it uses `vectorized` (indexes the ground truth
once, no dict per detection), or pycocotools where `eval_backend` asks for the reference (`per_stage_backend`).

`evaluate_boxes` is the one place our code runs a box evaluation: the ground truth is indexed once (`load_gt`) and
detections are loaded as arrays, not as lists of dicts.
"""

import contextlib
import io
import json
from typing import Dict, Optional, Tuple

import numpy as np

from ..config import EVAL_BACKENDS
from ..errors import ConfigValueError
from .vectorized_coco import BoxGroundTruth, evaluate_box_rows

__all__ = [
    "BACKENDS",
    "BOX_BACKENDS",
    "COCO_METRICS",
    "coco_classes",
    "evaluate_boxes",
    "evaluate_coco",
    "load_gt",
    "mean_percent",
    "per_stage_backend",
    "summary_percent",
]

BACKENDS = EVAL_BACKENDS  # COCO evaluation of every kind (boxes, masks): Detectron2's COCOEvaluator's two
BOX_BACKENDS = ("vectorized",) + EVAL_BACKENDS  # box evaluation of detection arrays (`evaluate_boxes`)
# The 12 numbers COCOeval.summarize() prints, in its order (stats[0..11]).
COCO_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def summary_percent(stats) -> Dict[str, float]:
    """COCOeval.summarize()'s 12 numbers as {name: percent}; -1 (no ground truth for it, e.g. no large objects) is
    NaN, as Detectron2's COCOEvaluator reports it."""
    return {k: float(v) * 100 if v >= 0 else float("nan") for k, v in zip(COCO_METRICS, stats)}


def mean_percent(precision: np.ndarray) -> float:
    """The mean of a COCOeval precision array's defined entries (-1 marks undefined ones), in percent; NaN if none
    is defined."""
    defined = precision[precision > -1]
    return float(np.mean(defined)) * 100 if defined.size else float("nan")


def _check(backend: str, allowed=BACKENDS) -> None:
    if backend not in allowed:
        raise ConfigValueError(f"eval_backend={backend!r} is not one of {allowed}")


def per_stage_backend(eval_backend: str) -> str:
    """The box backend of per-stage evaluation under a run's `eval_backend`: pycocotools when the run asks for the
    reference, else `vectorized` (pycocotools' numbers, several times faster than faster-coco-eval per set)."""
    _check(eval_backend)
    return "pycocotools" if eval_backend == "pycocotools" else "vectorized"


def coco_classes(backend: str):
    """(COCO, COCOeval) classes of `backend`."""
    _check(backend)
    if backend == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval


def load_gt(json_file_or_dict, backend: str = "faster-coco-eval"):
    """The ground truth as `backend`'s COCO object (`vectorized`: a BoxGroundTruth), indexed once (from a json
    path or a COCO-format dict)."""
    _check(backend, BOX_BACKENDS)
    if backend == "vectorized":
        if not isinstance(json_file_or_dict, dict):
            with open(json_file_or_dict) as f:
                json_file_or_dict = json.load(f)
        return BoxGroundTruth(json_file_or_dict)
    coco_cls, _ = coco_classes(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        if isinstance(json_file_or_dict, dict):
            gt = coco_cls()
            gt.dataset = json_file_or_dict
            gt.createIndex()
            return gt
        return coco_cls(json_file_or_dict)


def evaluate_coco(gt, results, iou_type: str, backend: str = "faster-coco-eval") -> Tuple[np.ndarray, Dict]:
    """COCO evaluation ("bbox" or "segm") of `results` (what `gt.loadRes` takes: a COCO results list, or box rows
    as `evaluate_boxes`'), against `gt` (from `load_gt` with the same backend). Returns (stats (12,), eval dict
    with "precision" (T, R, K, A, M))."""
    _, eval_cls = coco_classes(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = eval_cls(gt, gt.loadRes(results), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return np.asarray(coco_eval.stats, dtype=np.float64), coco_eval.eval


def evaluate_boxes(gt, detections: np.ndarray, backend: str = "faster-coco-eval") -> Optional[Tuple[np.ndarray, Dict]]:
    """COCO box evaluation (`evaluate_coco`) of `detections` (D, 7): image_id, x, y, w, h, score, category_id
    (dataset ids); None for no detections."""
    if len(detections) == 0:
        return None
    if backend == "vectorized":
        return evaluate_box_rows(gt, detections)
    return evaluate_coco(gt, np.asarray(detections, dtype=np.float64), "bbox", backend)
