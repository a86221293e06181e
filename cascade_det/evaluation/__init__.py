"""Evaluation: per-stage COCO AP for cascade models, the COCO backends (faster-coco-eval or pycocotools; for boxes
also our vectorised COCOeval), and evaluation metrics in metrics.json."""

from .coco_backend import BACKENDS, BOX_BACKENDS, COCO_METRICS, evaluate_boxes, load_gt, per_stage_backend
from .metrics import write_eval_metrics
from .per_stage import (
    IOU_THRESHOLDS,
    FinalDetections,
    PerStageCOCOEvaluator,
    box_ap,
    detections_array,
    plot_per_stage_ap,
    stage_ap_table,
)

__all__ = [
    "BACKENDS",
    "BOX_BACKENDS",
    "COCO_METRICS",
    "IOU_THRESHOLDS",
    "FinalDetections",
    "PerStageCOCOEvaluator",
    "box_ap",
    "detections_array",
    "evaluate_boxes",
    "load_gt",
    "per_stage_backend",
    "plot_per_stage_ap",
    "stage_ap_table",
    "write_eval_metrics",
]
