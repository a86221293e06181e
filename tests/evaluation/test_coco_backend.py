"""faster-coco-eval (our default COCO backend) and our vectorised COCOeval (per-stage evaluation's) give
pycocotools' numbers: all 12 COCO metrics and AP at every IoU threshold, per stage, on the embedded val set and on a
synthetic COCO-sized result set; the vectorised one also every precision and recall entry on a ground truth made of
COCOeval's corner cases (crowd boxes, ties, more than 100 detections, annotated areas, classes without boxes)."""

import importlib.util
import os

import numpy as np
import pytest

from cascade_det.data import ensure_embedded_split
from cascade_det.evaluation import BOX_BACKENDS, COCO_METRICS, IOU_THRESHOLDS, box_ap, evaluate_boxes, load_gt

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
    gts = {backend: load_gt(json_file, backend) for backend in BOX_BACKENDS}
    for stage, noise in (("stage0", 6.0), ("stage1", 3.0), ("stage2", 2.0), ("ensemble", 1.5)):
        detections = jittered(gts["pycocotools"], noise, seed=len(stage) + int(noise * 10))
        reference = box_ap(gts["pycocotools"], detections, "pycocotools")
        for backend in ("faster-coco-eval", "vectorized"):
            assert_same_numbers(box_ap(gts[backend], detections, backend), reference, (backend, stage))
        assert 1 < reference["AP"] < 99 and reference["AP@0.50"] > reference["AP@0.95"]  # not all-0 or all-100


def test_backends_agree_on_a_coco_sized_result_set(tmp_path):
    """1,000 images, 80 categories with COCO's ids, 100 detections per image (100,000 detections; the benchmark
    times COCO's 5,000)."""
    bench = benchmark_module()
    json_file = bench.synthetic_dataset(str(tmp_path), 1000)
    gts = {backend: load_gt(json_file, backend) for backend in BOX_BACKENDS}
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
    assert len(detections) == 100_000
    reference = box_ap(gts["pycocotools"], detections, "pycocotools")
    for backend in ("faster-coco-eval", "vectorized"):
        assert_same_numbers(box_ap(gts[backend], detections, backend), reference, (backend, "coco-sized"))


def corner_cases(seed=0):
    """A ground truth and detections made of what COCOeval treats specially: crowd boxes (matched by any number of
    detections, IoU over the detection's area), annotated areas unlike the box's (area ranges read the annotation),
    duplicate boxes (equal IoU: the later annotation wins), equal scores (ties keep the results' order), over 100
    detections of one image and class (only the first 100 count), detections of a class the image lacks and of a
    class the dataset lacks, a category without boxes, an image without boxes."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "height": 400, "width": 600} for i in (3, 1, 7, 9)]  # not in id order
    categories = [{"id": c, "name": f"c{c}"} for c in (5, 2, 11, 40)]  # 40: no boxes at all
    anns = []

    def box(image, category, bbox, crowd=0, area=None):
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": image,
                "category_id": category,
                "bbox": [float(v) for v in bbox],
                "area": float(bbox[2] * bbox[3] if area is None else area),
                "iscrowd": crowd,
            }
        )

    for image in (3, 1, 7):
        for _ in range(12):
            w, h = rng.uniform(8, 150, 2)
            box(image, int(rng.choice([5, 2, 11])), [*rng.uniform(0, 400, 2), w, h], area=w * h * rng.uniform(0.3, 1))
        box(image, 5, [50, 50, 300, 200], crowd=1)
        box(image, 2, [100, 100, 40, 40])
        box(image, 2, [100, 100, 40, 40])  # a duplicate: ties in IoU
    # Two boxes the first detection overlaps equally (IoU 0.818 each): it takes the later one, leaving the earlier
    # for the second detection (IoU 0.74 with it, 0.48 with the later one).
    box(3, 2, [1000, 0, 20, 10])
    box(3, 2, [1004, 0, 20, 10])
    rows = []
    for a in anns:
        for k in range(4):
            x, y, w, h = np.asarray(a["bbox"]) + rng.normal(0, 1 + 4 * k, 4)
            rows.append([a["image_id"], x, y, max(w, 1), max(h, 1), round(rng.random(), 1), a["category_id"]])
    rows += [[3, 1002, 0, 20, 10, 0.95, 2], [3, 997, 0, 20, 10, 0.94, 2]]
    for _ in range(130):  # more than 100 detections of image 1, class 11, inside the crowd-free area
        rows.append([1, *rng.uniform(0, 300, 2), *rng.uniform(5, 200, 2), round(rng.random(), 2), 11])
    rows.append([7, 10, 10, 30, 30, 0.99, 40])  # a class with no ground truth anywhere
    rows.append([9, 10, 10, 30, 30, 0.98, 5])  # an image without ground truth
    rows.append([3, 10, 10, 30, 30, 0.97, 77])  # a class the dataset lacks: not evaluated
    return {"images": images, "annotations": anns, "categories": categories}, np.array(rows)


def test_vectorized_matches_pycocotools_entry_for_entry_on_cocoevals_corner_cases():
    dataset, detections = corner_cases()
    stats, evaluated = evaluate_boxes(load_gt(dataset, "vectorized"), detections, "vectorized")
    ref_stats, ref = evaluate_boxes(load_gt(dataset, "pycocotools"), detections, "pycocotools")
    np.testing.assert_array_equal(stats, ref_stats)
    np.testing.assert_array_equal(evaluated["precision"], ref["precision"])
    np.testing.assert_array_equal(evaluated["recall"], ref["recall"])
    assert 0.05 < ref_stats[0] < 0.95 and (ref["precision"] == -1).any()  # a real comparison, a class undefined


def test_vectorized_refuses_detections_of_images_the_ground_truth_lacks():
    dataset, detections = corner_cases()
    detections[0, 0] = 12345
    with pytest.raises(ValueError, match="image id 12345"):
        evaluate_boxes(load_gt(dataset, "vectorized"), detections, "vectorized")
