"""Per-stage evaluation: the AP arithmetic at each IoU threshold, and the evaluator on a real model."""

import numpy as np
import pytest
import torch

import cascade_det  # noqa: F401
from cascade_det.errors import ConfigValueError
from cascade_det.evaluation import (
    BOX_BACKENDS,
    IOU_THRESHOLDS,
    PerStageCOCOEvaluator,
    box_ap,
    detections_array,
    load_gt,
    per_stage_backend,
    plot_per_stage_ap,
)

from detectron2.structures import Boxes, Instances

ONE_BOX = {
    "images": [{"id": 1, "height": 100, "width": 100}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0}],
    "categories": [{"id": 7, "name": "thing"}],
}


@pytest.mark.parametrize("backend", BOX_BACKENDS)
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


def test_per_stage_evaluator_gives_the_same_numbers_with_every_box_backend(tmp_path):
    """The evaluator end to end (model outputs with stage rows in, per-stage metrics out) on the evaluation
    benchmark's synthetic set (100 images, 20 detections per set): vectorised, faster-coco-eval and pycocotools
    agree."""
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    from .test_coco_backend import benchmark_module

    bench = benchmark_module()
    name = "per_stage_backends_synthetic"
    register_coco_instances(name, {}, bench.synthetic_dataset(str(tmp_path), 100), str(tmp_path))
    dicts = DatasetCatalog.get(name)
    outputs = bench.synthetic_outputs(dicts, 20)
    inputs = [{"image_id": d["image_id"]} for d in dicts]
    results = {b: bench.run_evaluator(PerStageCOCOEvaluator(name, backend=b), inputs, outputs)[1] for b in BOX_BACKENDS}
    reference = results["pycocotools"]["per_stage_bbox"]
    assert {k.split("/")[0] for k in reference} == {"stage0", "stage1", "stage2", "ensemble"}
    assert 1 < reference["stage2/AP"] < 99
    for backend in ("vectorized", "faster-coco-eval"):
        got = results[backend]["per_stage_bbox"]
        assert got.keys() == reference.keys()
        for key, value in reference.items():
            assert got[key] == pytest.approx(value, abs=1e-4, nan_ok=True), (backend, key)


def test_runs_score_stage_sets_vectorised_unless_they_ask_for_pycocotools():
    assert per_stage_backend("faster-coco-eval") == "vectorized"
    assert per_stage_backend("pycocotools") == "pycocotools"
    with pytest.raises(ConfigValueError, match="eval_backend='cocoapi' is not one of"):
        per_stage_backend("cocoapi")
