"""`python -m cascade_det.evaluate`: saved results evaluated without the model: boxes and masks, a per-class table,
string image ids, and a confusion matrix with ground-truth rows, predicted columns, a missed column and a
false-positive row."""

import json
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest

from cascade_det.evaluate import confusion_matrix, main

GT = {
    "images": [{"id": "img_a", "height": 100, "width": 100}, {"id": "img_b", "height": 100, "width": 100}],
    "annotations": [
        {
            "id": 1,
            "image_id": "img_a",
            "category_id": 0,
            "bbox": [10, 10, 40, 40],
            "area": 1600,
            "iscrowd": 0,
            "segmentation": [[10, 10, 50, 10, 50, 50, 10, 50]],
        },
        {
            "id": 2,
            "image_id": "img_b",
            "category_id": 1,
            "bbox": [50, 50, 30, 30],
            "area": 900,
            "iscrowd": 0,
            "segmentation": [[50, 50, 80, 50, 80, 80, 50, 80]],
        },
    ],
    "categories": [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}],
}


def rle(x, y, w, h):
    grid = np.zeros((100, 100), dtype=np.uint8, order="F")
    grid[y : y + h, x : x + w] = 1
    encoded = mask_util.encode(grid)
    encoded["counts"] = encoded["counts"].decode()
    return encoded


RESULTS = [
    {
        "image_id": "img_a",
        "category_id": 0,
        "bbox": [10, 10, 40, 40],
        "score": 0.9,
        "segmentation": rle(10, 10, 40, 40),
    },
    # the dog called a cat, and a false positive of class dog in an empty corner
    {
        "image_id": "img_b",
        "category_id": 0,
        "bbox": [50, 50, 30, 30],
        "score": 0.8,
        "segmentation": rle(50, 50, 30, 30),
    },
    {"image_id": "img_b", "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.7, "segmentation": rle(0, 0, 10, 10)},
]


@pytest.fixture
def files(tmp_path):
    gt, results = tmp_path / "gt.json", tmp_path / "results.json"
    gt.write_text(json.dumps(GT))
    results.write_text(json.dumps(RESULTS))
    return str(gt), str(results)


def test_boxes_masks_and_per_class_ap_of_string_id_results(files, tmp_path, capsys):
    report = main([*files, "--output", str(tmp_path / "eval")])
    out = capsys.readouterr().out
    assert report["bbox"]["AP-cat"] == pytest.approx(100.0) and report["bbox"]["AP-dog"] == pytest.approx(0.0)
    assert report["segm"]["AP50"] == pytest.approx(50.0)  # cat found, dog missed: masks evaluated like boxes
    assert "Per-class box AP" in out and "| cat" in out and "COCO mask metrics" in out
    with open(tmp_path / "eval" / "metrics.json") as f:
        saved = json.load(f, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.json"))
    assert saved["bbox"]["APl"] is None  # no large objects: null, not NaN
    matrix = json.loads((tmp_path / "eval" / "confusion_matrix.json").read_text())
    assert matrix["rows"] == ["cat", "dog", "false positive"] and matrix["columns"] == ["cat", "dog", "missed"]
    # ground truth rows: cat found as cat; dog found as cat; one false positive predicted as dog
    assert matrix["counts"] == [[1, 0, 0], [1, 0, 0], [0, 1, 0]]


def test_the_confusion_matrix_counts_misses_and_ignores_low_scores():
    gt = {
        **GT,
        "images": [{"id": 1}, {"id": 2}],
        "annotations": [{**a, "image_id": i + 1} for i, a in enumerate(GT["annotations"])],
    }
    detections = np.array([[1, 10, 10, 40, 40, 0.9, 1], [2, 50, 50, 30, 30, 0.1, 1]])
    counts, names = confusion_matrix(gt, detections, score_threshold=0.3)
    assert names == ["cat", "dog"] and counts.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0]]


def test_results_of_an_image_the_ground_truth_lacks_are_named(files, tmp_path):
    gt, _ = files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**RESULTS[0], "image_id": "img_z"}]))
    with pytest.raises(ValueError, match="detection 0 is of image 'img_z', which the ground truth does not have"):
        main([gt, str(bad), "--output", str(tmp_path / "e")])
    assert not os.path.exists(tmp_path / "e")
