#!/usr/bin/env python
"""COCO evaluation time, side by side in one run: Detectron2's COCOEvaluator with pycocotools (what a pure-Python
Detectron2 evaluates with) and with faster-coco-eval (our default), and our per-stage evaluation (3 stages + the
ensemble, ground truth indexed once) with either backend; and whether every variant gives the same numbers.

    python benchmarks/benchmark_evaluation.py                 # COCO-sized: 5,000 images, 100 detections each
    python benchmarks/benchmark_evaluation.py --smoke         # seconds (tests run this)

The data is synthetic and COCO-shaped: 80 categories, about 7 ground-truth boxes per image, and for each of the 4
detection sets (stage0..2, ensemble) `--detections` boxes per image (jittered ground truth of varied quality, and
background boxes), as Detectron2 `Instances`, so each evaluator does all its own work: converting the model's
outputs, indexing, matching, accumulating. Times are the median of `--repeats` runs.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from bench_common import write_results

import cascade_det  # noqa: F401  (compat fixes first)
from cascade_det.evaluation import COCO_METRICS, FinalDetections, PerStageCOCOEvaluator

from detectron2.data import DatasetCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, Instances

STAGES = 3


def progress(message: str) -> None:
    print(f"[bench-eval] {message}", file=sys.stderr, flush=True)


def synthetic_dataset(folder: str, num_images: int, seed: int = 0) -> str:
    """A COCO-format ground truth of `num_images` 640x480 images, 80 categories with COCO's ids (1..90, gaps)."""
    rng = np.random.default_rng(seed)
    category_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "height": 480, "width": 640})
        for _ in range(int(rng.integers(1, 14))):
            w, h = rng.uniform(10, 300), rng.uniform(10, 250)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "iscrowd": 0,
                    "area": w * h,
                    "category_id": int(rng.choice(category_ids)),
                    "bbox": [x, y, w, h],
                }
            )
    categories = [{"id": c, "name": f"class{c}"} for c in category_ids]
    path = os.path.join(folder, "instances_synthetic.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return path


def synthetic_outputs(dataset_dicts, per_image: int, seed: int = 1):
    """Per image: the model's outputs with stage detections, as cascade heads with return_stage_detections give
    them (rows of stage -1 = the ensemble, then stage 0..2), each set better localised than the one before."""
    rng = np.random.default_rng(seed)
    outputs = []
    for d in dataset_dicts:
        gt = np.array([a["bbox"] for a in d["annotations"]], dtype=np.float64).reshape(-1, 4)
        gt_classes = np.array([a["category_id"] for a in d["annotations"]], dtype=np.int64)
        parts = []
        for stage, noise in ((-1, 5.0), (0, 12.0), (1, 7.0), (2, 5.0)):
            n_true = min(per_image // 2, 3 * len(gt))
            pick = rng.integers(0, len(gt), n_true)
            xywh = gt[pick] + rng.normal(0, noise, (n_true, 4))
            classes = np.where(rng.random(n_true) < 0.8, gt_classes[pick], rng.integers(0, 80, n_true))
            n_bg = per_image - n_true
            bg = np.column_stack(
                [
                    rng.uniform(0, 600, n_bg),
                    rng.uniform(0, 440, n_bg),
                    rng.uniform(8, 200, n_bg),
                    rng.uniform(8, 200, n_bg),
                ]
            )
            xywh = np.concatenate([xywh, bg])
            xyxy = np.column_stack([xywh[:, :2], xywh[:, :2] + np.maximum(xywh[:, 2:], 1.0)])
            parts.append(
                Instances(
                    (480, 640),
                    pred_boxes=Boxes(torch.from_numpy(xyxy).float()),
                    scores=torch.from_numpy(rng.random(per_image)).float(),
                    pred_classes=torch.from_numpy(np.concatenate([classes, rng.integers(0, 80, n_bg)])).long(),
                    stage=torch.full((per_image,), stage, dtype=torch.int64),
                )
            )
        outputs.append({"instances": Instances.cat(parts)})
    return outputs


def run_evaluator(evaluator, inputs, outputs, chunk=8):
    evaluator.reset()
    start = time.perf_counter()
    for i in range(0, len(inputs), chunk):
        evaluator.process(inputs[i : i + chunk], outputs[i : i + chunk])
    results = evaluator.evaluate()
    return time.perf_counter() - start, results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="detections per image, per set")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="100 images, 20 detections each")
    parser.add_argument("--json", default="", help="write the measurements here (never overwritten)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.images, args.detections = 100, 20
    with tempfile.TemporaryDirectory() as tmp:
        progress(f"writing a synthetic COCO ground truth of {args.images} images")
        name = f"benchmark_eval_{args.images}"
        register_coco_instances(name, {}, synthetic_dataset(tmp, args.images), tmp)
        dicts = DatasetCatalog.get(name)
        progress(f"making {STAGES + 1} x {args.detections} detections per image")
        outputs = synthetic_outputs(dicts, args.detections)
        inputs = [{"image_id": d["image_id"], "height": 480, "width": 640} for d in dicts]
        variants = {
            "Detectron2 COCOEvaluator, pycocotools": lambda: FinalDetections(
                COCOEvaluator(name, tasks=("bbox",), distributed=False, use_fast_impl=False)
            ),
            "Detectron2 COCOEvaluator, faster-coco-eval (ours)": lambda: FinalDetections(
                COCOEvaluator(name, tasks=("bbox",), distributed=False, use_fast_impl=True)
            ),
            "per-stage (3 stages + ensemble), pycocotools": lambda: PerStageCOCOEvaluator(name, backend="pycocotools"),
            "per-stage (3 stages + ensemble), faster-coco-eval": lambda: PerStageCOCOEvaluator(
                name, backend="faster-coco-eval"
            ),
            "per-stage (3 stages + ensemble), vectorized (ours)": lambda: PerStageCOCOEvaluator(name),
        }
        times, results = {v: [] for v in variants}, {}
        for repeat in range(args.repeats):
            for variant, make in variants.items():
                seconds, results[variant] = run_evaluator(make(), inputs, outputs)
                times[variant].append(seconds)
                progress(f"repeat {repeat + 1}/{args.repeats}: {variant}: {seconds:.1f} s")
    median = {v: statistics.median(t) for v, t in times.items()}
    base = median["Detectron2 COCOEvaluator, pycocotools"]
    ours = median["Detectron2 COCOEvaluator, faster-coco-eval (ours)"]
    print(f"{args.images} images x {args.detections} detections per set; medians of {args.repeats}")
    print("| evaluation | time (s) | vs Detectron2 + pycocotools | vs ensemble-only, ours |")
    print("|---|---|---|---|")
    for variant, seconds in median.items():
        print(f"| {variant} | {seconds:.2f} | {base / seconds:.2f}x faster | {seconds / ours:.2f}x the time |")
    # The same numbers: the ensemble's 12 COCO metrics from both COCOEvaluators and both per-stage backends.
    bbox = [results[v]["bbox"] for v in list(variants)[:2]]
    per_stage = [results[v]["per_stage_bbox"] for v in list(variants)[2:]]
    names = {"AP": "AP", "AP50": "AP50", "AP75": "AP75", "APs": "APs", "APm": "APm", "APl": "APl"}
    differences = [abs(bbox[0][k] - bbox[1][k]) for k in names] + [
        abs(per_stage[0][k] - other[k]) for other in per_stage[1:] for k in per_stage[0]
    ]
    differences += [abs(bbox[1][k] - other[f"ensemble/{k}"]) for other in per_stage for k in names]
    print(f"largest difference between the backends' numbers (percent points): {max(differences):.2e}")
    report = {
        "images": args.images,
        "detections_per_set": args.detections,
        "seconds": median,
        "max_difference": max(differences),
        "metrics": COCO_METRICS,
    }
    if args.json:
        write_results(report, args.json)
    return report


if __name__ == "__main__":
    main()
