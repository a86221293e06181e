"""faster-coco-eval, our default COCO backend, gives pycocotools' numbers: all 12 COCO metrics and AP at every IoU
threshold, per stage, on the embedded val set and on a synthetic COCO-sized result set."""

import importlib.util
import os

import numpy as np
import pytest

from cascade_det.data import ensure_embedded_split
from cascade_det.evaluation import COCO_METRICS, IOU_THRESHOLDS, box_ap, load_gt

from ..conftest import ROOT

KEYS = list(COCO_METRICS) + [f"AP@{t:.2f}" for t in IOU_THRESHOLDS]


def benchmark_module():
    path = os.path.join(ROOT, "benchmarks", "benchmark_evaluation.py")
    spec = importlib.util.spec_from_file_location("benchmark_evaluation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jittered(gt, noise, seed):
    """Detections near the ground truth of `gt` (a COCO object), some with a wrong class, as result rows."""
    rng = np.random.default_rng(seed)
    anns = list(gt.anns.values())
    rows = []
    for _ in range(3):
        for a in anns:
            x, y, w, h = np.asarray(a["bbox"]) + rng.normal(0, noise, 4)
            category = a["category_id"] if rng.random() < 0.8 else int(rng.choice(list(gt.cats)))
            rows.append([a["image_id"], x, y, max(w, 1), max(h, 1), rng.random(), category])
    return np.array(rows)


def assert_same_numbers(a, b, what):
    for key in KEYS:
        if np.isnan(a[key]) or np.isnan(b[key]):
            assert np.isnan(a[key]) and np.isnan(b[key]), (what, key)
        else:
            assert a[key] == pytest.approx(b[key], abs=1e-4), (what, key, a[key], b[key])


def test_backends_agree_per_stage_on_the_embedded_val_set():
    json_file = ensure_embedded_split("cascade_shapes_val")
    gts = {backend: load_gt(json_file, backend) for backend in ("faster-coco-eval", "pycocotools")}
    for stage, noise in (("stage0", 6.0), ("stage1", 3.0), ("stage2", 2.0), ("ensemble", 1.5)):
        detections = jittered(gts["pycocotools"], noise, seed=len(stage) + int(noise * 10))
        fast, reference = (box_ap(gts[b], detections, b) for b in ("faster-coco-eval", "pycocotools"))
        assert_same_numbers(fast, reference, stage)
        assert 1 < fast["AP"] < 99 and fast["AP@0.50"] > fast["AP@0.95"]  # a real comparison, not all-0 or all-100


def test_backends_agree_on_a_coco_sized_result_set(tmp_path):
    """2,000 images, 80 categories with COCO's ids, 100 detections per image (200,000 detections; the benchmark
    times COCO's 5,000)."""
    bench = benchmark_module()
    json_file = bench.synthetic_dataset(str(tmp_path), 2000)
    gts = {backend: load_gt(json_file, backend) for backend in ("faster-coco-eval", "pycocotools")}
    rng = np.random.default_rng(0)
    by_image = {}
    for a in gts["pycocotools"].anns.values():
        by_image.setdefault(a["image_id"], []).append(a)
    rows = []
    for image_id, anns in by_image.items():
        for k in range(100):
            a = anns[k % len(anns)]
            x, y, w, h = np.asarray(a["bbox"]) + rng.normal(0, 3 + k % 20, 4)
            rows.append([image_id, x, y, max(w, 1), max(h, 1), rng.random(), a["category_id"]])
    detections = np.array(rows)
    assert len(detections) == 200_000
    fast, reference = (box_ap(gts[b], detections, b) for b in ("faster-coco-eval", "pycocotools"))
    assert_same_numbers(fast, reference, "coco-sized")
