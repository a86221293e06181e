"""Per-stage evaluation: the AP arithmetic at each IoU threshold, and the evaluator on a real model."""

import numpy as np
import pytest
import torch

import cascade_det  # noqa: F401
from cascade_det.evaluation import (
    BACKENDS,
    IOU_THRESHOLDS,
    PerStageCOCOEvaluator,
    box_ap,
    detections_array,
    load_gt,
    plot_per_stage_ap,
)

from detectron2.structures import Boxes, Instances

ONE_BOX = {
    "images": [{"id": 1, "height": 100, "width": 100}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0}],
    "categories": [{"id": 7, "name": "thing"}],
}


@pytest.mark.parametrize("backend", BACKENDS)
def test_ap_per_iou_threshold_follows_the_detection_iou(backend):
    # Box [10, 10, 50 x 36] inside the 50 x 50 ground truth: IoU 0.72. Category 0 maps to dataset id 7.
    detection = Instances(
        (100, 100),
        pred_boxes=Boxes(torch.tensor([[10.0, 10.0, 60.0, 46.0]])),
        scores=torch.tensor([0.9]),
        pred_classes=torch.tensor([0]),
    )
    rows = detections_array(detection, image_id=1, to_dataset_id={0: 7})
    assert rows.tolist() == [[1, 10, 10, 50, 36, pytest.approx(0.9), 7]]
    result = box_ap(load_gt(ONE_BOX, backend), rows, backend)
    for t in IOU_THRESHOLDS:
        expected = 100.0 if t <= 0.72 else 0.0
        assert result[f"AP@{t:.2f}"] == pytest.approx(expected, abs=1e-6), t
    assert result["AP50"] == pytest.approx(100.0) and result["AP75"] == 0.0
    assert result["AP"] == pytest.approx(50.0)  # 5 of 10 thresholds (0.50..0.70) matched


def test_no_detections_give_nan_as_coco_evaluator_reports_them():
    assert all(np.isnan(v) for v in box_ap(load_gt(ONE_BOX), np.zeros((0, 7))).values())


def test_plot_is_written(tmp_path):
    results = {
        name: {"AP": 1.0, **{f"AP@{t:.2f}": float(i) for t in IOU_THRESHOLDS}}
        for i, name in enumerate(["stage0", "stage1", "ensemble"])
    }
    path = tmp_path / "plot.png"
    plot_per_stage_ap(results, str(path), title="x")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_stage_evaluator_refuses_outputs_without_stage_detections():
    evaluator = PerStageCOCOEvaluator("cascade_shapes_val")
    evaluator.reset()
    plain = Instances(
        (10, 10),
        pred_boxes=Boxes(torch.zeros(0, 4)),
        scores=torch.zeros(0),
        pred_classes=torch.zeros(0, dtype=torch.long),
    )
    with pytest.raises(ValueError, match="no stage detections.*return_stage_detections=True"):
        evaluator.process([{"image_id": 1}], [{"instances": plain}])
