"""Evaluate saved detections against a COCO ground truth, without the model: the 12 COCO box metrics, each stage's AP
at every IoU threshold, precision-recall curves and a confusion matrix.

    python -m cascade_det.evaluate GT.json RESULTS.json
    python -m cascade_det.evaluate datasets/coco/annotations/instances_val2017.json \
        output/run/inference/iter_0087959/coco_instances_results.json \
        --per-stage output/run/inference/iter_0087959/per_stage_detections.npz

RESULTS.json is a COCO results file (a list of {"image_id", "category_id", "bbox" [x, y, w, h], "score"}), e.g. the
`coco_instances_results.json` Detectron2's COCOEvaluator writes; --per-stage takes the `per_stage_detections.npz`
our per-stage evaluation writes beside it. Written into --output (default: a new `evaluation_<N>/` folder beside
RESULTS.json; nothing existing is overwritten): `metrics.json`, `pr_curves_<classes>.png` (precision against recall
at IoU 0.50, one figure per group of 10 classes), `confusion_matrix.png` (detections matched to ground truth at IoU
0.50 whatever their class, score >= --score-threshold; last columns: unmatched detections (false positives) and
unmatched ground truth (missed)), and with --per-stage `per_stage_ap.{json,png}`.
"""

import argparse
import json
import os
import sys
from typing import Dict, List

import numpy as np

from .evaluation.coco_backend import BACKENDS, evaluate_boxes, load_gt, mean_percent, summary_percent
from .evaluation.per_stage import box_ap, plot_per_stage_ap, stage_ap_table
from .outputs import next_free_path

__all__ = ["main", "results_array"]

CLASSES_PER_FIGURE = 10


def results_array(results: List[dict], path: str = "results") -> np.ndarray:
    """A COCO results list as rows (image_id, x, y, w, h, score, category_id); an error names what is wrong."""
    if not isinstance(results, list):
        raise ValueError(f"{path}: expected a list of detections (COCO results format), got {type(results).__name__}")
    rows = np.empty((len(results), 7), dtype=np.float64)
    for i, r in enumerate(results):
        try:
            rows[i] = [r["image_id"], *r["bbox"], r["score"], r["category_id"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: detection {i} is not a COCO box result ({e!r}): {str(r)[:200]}") from e
    return rows


def plot_pr_curves(gt, coco_eval: Dict, folder: str) -> List[str]:
    """Precision against recall at IoU 0.50 (all areas, 100 detections), one figure per group of classes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    precision = coco_eval["precision"][0, :, :, 0, -1]  # (recall thresholds, classes)
    recall = np.linspace(0, 1, precision.shape[0])
    categories = [gt.cats[c]["name"] for c in sorted(gt.cats)]
    paths = []
    for start in range(0, len(categories), CLASSES_PER_FIGURE):
        fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
        for k in range(start, min(start + CLASSES_PER_FIGURE, len(categories))):
            curve = precision[:, k]
            if (curve > -1).any():
                ap = mean_percent(curve)
                ax.plot(recall, np.where(curve > -1, curve, np.nan), label=f"{categories[k]} (AP50 {ap:.1f})")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(
            f"Precision-recall at IoU 0.50, classes {start + 1}-{min(start + CLASSES_PER_FIGURE, len(categories))}"
        )
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        path = os.path.join(
            folder, f"pr_curves_{start + 1:03d}-{min(start + CLASSES_PER_FIGURE, len(categories)):03d}.png"
        )
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_confusion_matrix(gt, detections: np.ndarray, folder: str, score_threshold: float) -> str:
    """Detections (score >= threshold) matched to ground truth at IoU 0.50 across classes (faster-coco-eval's
    confusion matrix): ground-truth class -> predicted class, unmatched detections of the class (false positives),
    missed ground truth; counts written in the cells, colours per ground-truth object of the row's class."""
    import matplotlib

    matplotlib.use("Agg")
    from faster_coco_eval.extra import PreviewResults
    from matplotlib import pyplot as plt

    dt = gt.loadRes(detections)
    matrix = PreviewResults(gt, dt, iouType="bbox", iou_tresh=0.5, min_score=score_threshold).compute_confusion_matrix()
    names = [gt.cats[c]["name"] for c in gt.cats]
    ground_truth = matrix[:, :-2].sum(axis=1, keepdims=True) + matrix[:, -1:]  # matched + missed, per class
    normalised = matrix / np.maximum(ground_truth, 1)
    size = max(4.0, 0.35 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=100)
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names) + 2), names + ["false pos.", "missed"], rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(f"IoU 0.50, score >= {score_threshold:g}; per ground-truth object")
    if len(names) <= 20:
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                f"{int(v)}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if normalised[i, j] > 0.5 else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = os.path.join(folder, "confusion_matrix.png")
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> Dict:
    parser = argparse.ArgumentParser(
        prog="python -m cascade_det.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("gt", help="COCO ground-truth json (instances_*.json)")
    parser.add_argument("results", help="COCO results json (e.g. coco_instances_results.json)")
    parser.add_argument("--per-stage", default="", help="per_stage_detections.npz of our per-stage evaluation")
    parser.add_argument("--output", default="", help="folder to write into (default: a new one beside RESULTS)")
    parser.add_argument("--backend", default="faster-coco-eval", choices=BACKENDS)
    parser.add_argument("--score-threshold", type=float, default=0.3, help="for the confusion matrix")
    args = parser.parse_args(argv)
    for path in (args.gt, args.results, args.per_stage):
        if path and not os.path.isfile(path):
            parser.error(f"{path} does not exist")
    output = args.output or next_free_path(os.path.dirname(os.path.abspath(args.results)), "evaluation_{}")
    if os.path.exists(os.path.join(output, "metrics.json")):
        parser.error(f"{output} already holds an evaluation (metrics.json): choose another --output")
    os.makedirs(output, exist_ok=True)

    gt = load_gt(args.gt, args.backend)
    with open(args.results) as f:
        detections = results_array(json.load(f), args.results)
    evaluated = evaluate_boxes(gt, detections, args.backend)
    if evaluated is None:
        parser.error(f"{args.results} holds no detections")
    stats, coco_eval = evaluated
    metrics = summary_percent(stats)
    print("COCO box metrics (%):")
    print("  " + "  ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    report = {"bbox": metrics}
    written = plot_pr_curves(gt, coco_eval, output)
    written.append(plot_confusion_matrix(gt, detections, output, args.score_threshold))
    if args.per_stage:
        stages = np.load(args.per_stage)
        results = {name: box_ap(gt, stages[name], args.backend) for name in sorted(stages.files) if name != "ensemble"}
        results["ensemble"] = box_ap(gt, detections, args.backend)
        print("Per-stage box AP (columns: AP at each IoU threshold):")
        print(stage_ap_table(results))
        report["per_stage_bbox"] = results
        with open(os.path.join(output, "per_stage_ap.json"), "w") as f:
            json.dump(results, f, indent=1)
        plot_per_stage_ap(results, os.path.join(output, "per_stage_ap.png"), title=os.path.basename(args.results))
        written.append(os.path.join(output, "per_stage_ap.png"))
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"Wrote {output}: metrics.json, " + ", ".join(os.path.basename(p) for p in written))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
