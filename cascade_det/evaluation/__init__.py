"""Evaluation: per-stage COCO AP for cascade models."""
from .per_stage import IOU_THRESHOLDS, PerStageCOCOEvaluator, coco_box_ap, plot_per_stage_ap

__all__ = ["IOU_THRESHOLDS", "PerStageCOCOEvaluator", "coco_box_ap", "plot_per_stage_ap"]
