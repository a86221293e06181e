"""Evaluation: per-stage COCO AP for cascade models, and evaluation metrics in metrics.json."""

from .metrics import write_eval_metrics
from .per_stage import IOU_THRESHOLDS, FinalDetections, PerStageCOCOEvaluator, coco_box_ap, plot_per_stage_ap

__all__ = [
    "IOU_THRESHOLDS",
    "FinalDetections",
    "PerStageCOCOEvaluator",
    "coco_box_ap",
    "plot_per_stage_ap",
    "write_eval_metrics",
]
