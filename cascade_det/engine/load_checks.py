"""What a checkpoint must have loaded for a run to go on, from `SafeDetectionCheckpointer.last_load_report`.

  * --eval-only: every tensor of the model, with its shape. A checkpoint made for another number of classes is an
    error naming both numbers; any other gap is an error listing what was not loaded.
  * training from `train.init_checkpoint` / `MODEL.WEIGHTS`: the whole backbone (its bottom-up network when it has
    one: an ImageNet file holds no FPN). Layers that depend on the number of classes and come with another shape
    (fine-tuning a COCO model on other data) are re-initialised, and logged.
`train.allow_partial_checkpoint=True` / `MODEL.ALLOW_PARTIAL_CHECKPOINT True` turns both errors into warnings.
"""

import logging
import re
from typing import Dict, List, Optional, Tuple

from ..errors import Error
from .run import Run

__all__ = ["CheckpointMismatchError", "check_load_report"]

logger = logging.getLogger("cascade_det")

_CLASS_LAYERS = re.compile(
    r"(box_predictor(\.\d+)?\.(cls_score|bbox_pred)|mask_head(\.\d+)?\.predictor)\.(weight|bias)$"
)
_CLS_SCORE = re.compile(r"box_predictor(\.\d+)?\.cls_score\.weight$")


class CheckpointMismatchError(Error, ValueError):
    """A checkpoint that does not fit the model it is loaded into."""


def _class_counts(report: Dict) -> Optional[Tuple[int, int]]:
    """(classes the checkpoint predicts, classes the model predicts), from a classifier of another shape."""
    for key, file_shape, model_shape in report["incorrect_shapes"]:
        if _CLS_SCORE.search(key):
            return file_shape[0] - 1, model_shape[0] - 1
    return None


def _listing(keys: List[str]) -> str:
    return ", ".join(keys[:5]) + (f", ... ({len(keys)} in all)" if len(keys) > 5 else "")


def check_load_report(report: Dict, run: Run, path: str, *, eval_only: bool) -> None:
    allowed = run.settings.allow_partial_checkpoint
    classes_key = run.key("num_classes")
    flag = f"{run.key('allow_partial_checkpoint')}=True"
    counts = _class_counts(report)
    class_layers = [k for k, *_ in report["incorrect_shapes"] if _CLASS_LAYERS.search(k)]
    other_shapes = [k for k, *_ in report["incorrect_shapes"] if not _CLASS_LAYERS.search(k)]
    if eval_only:
        if counts and not allowed:
            raise CheckpointMismatchError(
                f"{path} predicts {counts[0]} classes but the model is configured for {counts[1]} "
                f"({classes_key}={counts[1]}): evaluate it with {classes_key}={counts[0]} and a test "
                "dataset of its categories, or give the checkpoint trained for this dataset"
            )
        gaps = report["missing"] + [k for k, *_ in report["incorrect_shapes"]]
        if gaps:
            message = (
                f"{path} does not hold {len(gaps)} of the model's {len(gaps) + len(report['matched'])} "
                f"tensors ({_listing(gaps)}): evaluating would score random weights"
            )
            if not allowed:
                raise CheckpointMismatchError(f"{message}. Use the checkpoint of this model, or set {flag}.")
            logger.warning("%s (%s is set)", message, flag)
        return
    if class_layers:
        logger.warning(
            "Re-initialised the class-dependent layers (%s): %s has %s classes, the model %s",
            _listing(class_layers),
            path,
            *(counts or ("another number of", "its")),
        )
    if other_shapes:
        logger.warning("Not loaded (another shape in %s): %s", path, _listing(other_shapes))
    backbone = [
        k
        for k in report["matched"] + report["missing"] + [k for k, *_ in report["incorrect_shapes"]]
        if k.startswith("backbone.")
    ]
    bottom_up = [k for k in backbone if k.startswith("backbone.bottom_up.")] or backbone
    unloaded = [k for k in bottom_up if k not in set(report["matched"])]
    if unloaded:
        message = (
            f"{path} does not initialise {len(unloaded)} of the backbone's {len(bottom_up)} tensors "
            f"({_listing(unloaded)})"
        )
        if not allowed:
            raise CheckpointMismatchError(
                f"{message}: it is not a checkpoint of this model's backbone. Give one (e.g. the ImageNet file of this "
                f"backbone), or set {flag} to train with the rest at random initialisation."
            )
        logger.warning("%s (%s is set)", message, flag)
