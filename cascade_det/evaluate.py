"""Evaluate saved detections against a COCO ground truth, without the model: the COCO box (and mask) metrics, a
per-class AP table, each stage's AP at every IoU threshold, precision-recall curves and a confusion matrix.

    python -m cascade_det.evaluate GT.json RESULTS.json
    python -m cascade_det.evaluate datasets/coco/annotations/instances_val2017.json \
        output/run/inference/iter_0087959/coco_instances_results.json \
        --per-stage output/run/inference/iter_0087959/per_stage_detections.npz

RESULTS.json is a COCO results file (a list of {"image_id", "category_id", "bbox" [x, y, w, h], "score"}, with
"segmentation" (RLE) for a mask model), e.g. the `coco_instances_results.json` Detectron2's COCOEvaluator writes;
masks are evaluated too when the results carry them. --per-stage takes the `per_stage_detections.npz` our per-stage
evaluation writes beside it. Image ids may be strings (VOC's file stems): they are numbered as the evaluation
during training numbers them. Written into --output (default: a new `evaluation_<N>/` folder beside RESULTS.json;
nothing existing is overwritten): `metrics.json` (a metric that cannot be computed is null), `pr_curves_<classes>.png`
(precision against recall at IoU 0.50, one figure per group of 10 classes), `confusion_matrix.png` and `.json`
(detections scoring >= --score-threshold matched one to one to the ground truth at IoU >= 0.50 whatever their class,
best score first: rows are the ground-truth classes plus a "false positive" row for detections that match nothing,
columns the predicted classes plus a "missed" column for ground truth that no detection matches), and with
--per-stage `per_stage_ap.{json,png}`.
"""

import argparse
import json
import os
import sys
from typing import Dict, List, Tuple

import numpy as np
from tabulate import tabulate

from .engine.args import probability
from .errors import InputError, add_debug_argument, exit_on_user_error
from .evaluation.coco_backend import (
    BACKENDS,
    evaluate_boxes,
    evaluate_coco,
    load_gt,
    mean_percent,
    per_stage_backend,
    summary_percent,
)
from .evaluation.metrics import json_safe
from .evaluation.per_stage import box_ap, plot_per_stage_ap, stage_ap_table
from .image_ids import dataset_image_numbers, with_integer_image_ids
from .outputs import check_writable, next_free_path

__all__ = ["confusion_matrix", "main", "per_class_ap", "results_array"]

CLASSES_PER_FIGURE = 10


def results_array(results: List[dict], path: str = "results") -> np.ndarray:
    """A COCO results list as rows (image_id, x, y, w, h, score, category_id); an error names what is wrong."""
    if not isinstance(results, list):
        raise InputError(f"{path}: expected a list of detections (COCO results format), got {type(results).__name__}")
    rows = np.empty((len(results), 7), dtype=np.float64)
    for i, r in enumerate(results):
        try:
            rows[i] = [r["image_id"], *r["bbox"], r["score"], r["category_id"]]
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{path}: detection {i} is not a COCO box result ({e!r}): {str(r)[:200]}") from e
    return rows


def _read_json(path: str, what: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path} ({what}) cannot be read as JSON: {type(e).__name__}: {e}") from e


def check_results(gt_dataset: dict, detections: np.ndarray, path: str) -> None:
    """Detections that cannot be scored as they are (an image or a category the ground truth does not have, a
    score that is not a number, a box that is not finite) are an error naming the first and the fix: COCOeval
    would stop with a bare assertion or, for shifted category ids, score them silently as wrong."""
    images = {image.get("id") for image in gt_dataset["images"] if isinstance(image, dict)}
    unknown = sorted({int(i) for i in detections[:, 0] if i not in images})
    if unknown:
        raise InputError(
            f"{path}: detections of {len(unknown)} images the ground truth does not have (image_id "
            f"{', '.join(map(str, unknown[:5]))}): evaluate against the ground truth of the set they were made on"
        )
    bad = np.flatnonzero(~np.isfinite(detections[:, 1:6]).all(axis=1))
    if len(bad):
        raise InputError(
            f"{path}: {len(bad)} detections have a score or box that is not a number (NaN or infinity), e.g. "
            f"detection {bad[0]}: the model that made them diverged; evaluate the results of a finite model"
        )
    categories = sorted(c["id"] for c in gt_dataset.get("categories", []) if isinstance(c, dict) and "id" in c)
    found = sorted({int(c) for c in detections[:, 6]})
    unknown_categories = [c for c in found if c not in set(categories)]
    if unknown_categories:
        hint = ""
        if categories and {c + 1 for c in found} <= set(categories):
            hint = (
                " They look 0-based (contiguous class indices): write the dataset's category ids (Detectron2's "
                "thing_dataset_id_to_contiguous_id, reversed), e.g. index + 1 here."
            )
        raise InputError(
            f"{path}: category ids {', '.join(map(str, unknown_categories[:8]))} are not categories of the ground "
            f"truth (its ids: {', '.join(map(str, categories[:8]))}{', ...' if len(categories) > 8 else ''}).{hint}"
        )


def _per_stage_arrays(path: str) -> Dict[str, np.ndarray]:
    """The per-stage detections of `path` (an .npz of (N, 7) float arrays, one per stage), read whole and checked."""
    try:
        with np.load(path) as stages:
            arrays = {name: stages[name] for name in stages.files}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(
            f"--per-stage {path} cannot be read as the .npz of our per-stage evaluation ({type(e).__name__}: {e})"
        ) from e
    for name, array in arrays.items():
        if array.dtype == object or (array.size and (array.ndim != 2 or array.shape[1] != 7)):
            raise InputError(
                f"--per-stage {path}: {name!r} is a {array.dtype} array of shape {array.shape}, not (N, 7) rows of "
                "(image_id, x, y, w, h, score, category_id)"
            )
    return arrays


def _with_image_numbers(gt_dataset: dict, results: List[dict], path: str) -> Tuple[dict, List[dict]]:
    """Ground truth and results with integer image ids (`dataset_image_numbers`: string ids numbered as during
    training); a result whose image is not in the ground truth is an error naming it."""
    mapping = dataset_image_numbers(gt_dataset)
    if not mapping:
        return gt_dataset, results
    numbered = []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or "image_id" not in r:
            numbered.append(r)  # results_array names what is wrong with it
            continue
        image_id = r["image_id"]
        if image_id not in mapping:
            raise InputError(f"{path}: detection {i} is of image {image_id!r}, which the ground truth does not have")
        numbered.append({**r, "image_id": mapping[image_id]})
    return with_integer_image_ids(gt_dataset, mapping), numbered


def per_class_ap(gt, coco_eval: Dict) -> List[Tuple[str, float]]:
    """(class name, AP in percent; NaN where the class has no ground truth) per category, as Detectron2's
    COCOEvaluator computes it: the mean precision over IoU 0.50:0.95, recall points, all areas, 100 detections."""
    precision = coco_eval["precision"]  # (IoU thresholds, recall points, classes, areas, max dets)
    names = [gt.cats[c]["name"] for c in sorted(gt.cats)]
    return [(name, mean_percent(precision[:, :, k, 0, -1])) for k, name in enumerate(names)]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of XYWH boxes a (N, 4) against b (M, 4): (N, M)."""
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    w = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def confusion_matrix(
    gt_dataset: dict, detections: np.ndarray, score_threshold: float = 0.3, iou_threshold: float = 0.5
) -> Tuple[np.ndarray, List[str]]:
    """Counts (K + 1, K + 1) over the K categories of `gt_dataset` (a COCO dict with integer image ids):
    [g, p] ground-truth objects of class g matched by a detection of class p; [g, K] objects of class g that no
    detection matched (missed); [K, p] detections of class p that matched no object (false positives). Detections
    (rows as `results_array`) scoring >= `score_threshold` are matched per image, best score first, each to the
    unmatched non-crowd object of highest IoU >= `iou_threshold`, whatever the classes; a detection that only
    overlaps a crowd region is not counted. Returns (counts, category names)."""
    categories = sorted(c["id"] for c in gt_dataset["categories"])
    index = {c: k for k, c in enumerate(categories)}
    names = {c["id"]: c["name"] for c in gt_dataset["categories"]}
    K = len(categories)
    counts = np.zeros((K + 1, K + 1), dtype=np.int64)
    objects: Dict[int, list] = {}
    for a in gt_dataset["annotations"]:
        objects.setdefault(a["image_id"], []).append(a)
    kept = detections[detections[:, 5] >= score_threshold]
    by_image: Dict[int, np.ndarray] = {}
    for image_id in np.unique(kept[:, 0]):
        by_image[int(image_id)] = kept[kept[:, 0] == image_id]
    for image in gt_dataset["images"]:
        anns = objects.get(image["id"], [])
        plain = [a for a in anns if not a.get("iscrowd", 0)]
        crowd = np.array([a["bbox"] for a in anns if a.get("iscrowd", 0)], dtype=np.float64).reshape(-1, 4)
        boxes = np.array([a["bbox"] for a in plain], dtype=np.float64).reshape(-1, 4)
        dets = by_image.get(image["id"], np.zeros((0, 7)))
        dets = dets[np.argsort(-dets[:, 5], kind="stable")]
        iou = _iou(dets[:, 1:5], boxes)
        matched = np.zeros(len(plain), dtype=bool)
        for d, det in enumerate(dets):
            p = index.get(int(det[6]))
            if p is None:
                raise InputError(
                    f"a detection of image {image['id']} has category id {int(det[6])}, not one of the "
                    f"ground truth's ({', '.join(map(str, categories[:10]))})"
                )
            candidates = np.where(~matched & (iou[d] >= iou_threshold), iou[d], -1.0)
            if len(plain) and candidates.max() >= iou_threshold:
                g = int(candidates.argmax())
                matched[g] = True
                counts[index[plain[g]["category_id"]], p] += 1
            elif not (len(crowd) and (_iou(det[None, 1:5], crowd) >= iou_threshold).any()):
                counts[K, p] += 1
        for g in np.where(~matched)[0]:
            counts[index[plain[g]["category_id"]], K] += 1
    return counts, [names[c] for c in categories]


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


def plot_confusion_matrix(counts: np.ndarray, names: List[str], folder: str, score_threshold: float) -> str:
    """`confusion_matrix`'s counts as a figure (cells coloured by the share of their row: per ground-truth object of
    the class, or per false positive) and as JSON beside it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    normalised = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.35 * len(names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), dpi=100)
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names) + 1), names + ["missed"], rotation=90, fontsize=7)
    ax.set_yticks(range(len(names) + 1), names + ["false positive"], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(f"IoU 0.50, score >= {score_threshold:g}; shares of each row")
    if len(names) <= 20:
        for (i, j), v in np.ndenumerate(counts):
            color = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, f"{int(v)}", ha="center", va="center", fontsize=6, color=color)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    path = os.path.join(folder, "confusion_matrix.png")
    fig.savefig(path)
    plt.close(fig)
    with open(os.path.join(folder, "confusion_matrix.json"), "w") as f:
        json.dump({"rows": names + ["false positive"], "columns": names + ["missed"], "counts": counts.tolist()}, f)
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
    add_debug_argument(parser)
    parser.add_argument("--score-threshold", type=probability, default=0.3, help="for the confusion matrix")
    args = parser.parse_args(argv)
    for path in (args.gt, args.results, args.per_stage):
        if path and not os.path.isfile(path):
            parser.error(f"{path} does not exist")
    output = args.output or next_free_path(os.path.dirname(os.path.abspath(args.results)), "evaluation_{}")
    if os.path.exists(os.path.join(output, "metrics.json")):
        parser.error(f"{output} already holds an evaluation (metrics.json): choose another --output")

    # Everything is read and checked before anything is written.
    gt_dataset = _read_json(args.gt, "ground truth")
    if not isinstance(gt_dataset, dict) or not isinstance(gt_dataset.get("images"), list):
        raise InputError(f"{args.gt} is not a COCO ground-truth file (no 'images' list at its top level)")
    results = _read_json(args.results, "results")
    if not isinstance(results, list):
        results_array(results, args.results)  # the error that says what the file should hold
    gt_dataset, results = _with_image_numbers(gt_dataset, results, args.results)
    detections = results_array(results, args.results)
    if not len(detections):
        parser.error(f"{args.results} holds no detections")
    check_results(gt_dataset, detections, args.results)
    stages = _per_stage_arrays(args.per_stage) if args.per_stage else {}
    check_writable(output, "--output")
    os.makedirs(output, exist_ok=True)
    gt = load_gt(gt_dataset, args.backend)
    stats, coco_eval = evaluate_boxes(gt, detections, args.backend)
    metrics = summary_percent(stats)
    print("COCO box metrics (%):")
    print("  " + "  ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    classes = per_class_ap(gt, coco_eval)
    print("Per-class box AP (%):")
    print(tabulate(classes, headers=["category", "AP"], floatfmt=".2f", tablefmt="pipe"))
    report = {"bbox": {**metrics, **{f"AP-{name}": ap for name, ap in classes}}}
    if any("segmentation" in r for r in results):
        masks = [r for r in results if "segmentation" in r]
        report["segm"] = summary_percent(evaluate_coco(gt, masks, "segm", args.backend)[0])
        print("COCO mask metrics (%):")
        print("  " + "  ".join(f"{k} {v:.2f}" for k, v in report["segm"].items()))
    written = plot_pr_curves(gt, coco_eval, output)
    counts, names = confusion_matrix(gt_dataset, detections, args.score_threshold)
    written.append(plot_confusion_matrix(counts, names, output, args.score_threshold))
    if args.per_stage:
        backend = per_stage_backend(args.backend)  # several sets against one ground truth: vectorised
        stage_gt = load_gt(gt_dataset, backend)
        results = {name: box_ap(stage_gt, stages[name], backend) for name in sorted(stages) if name != "ensemble"}
        results["ensemble"] = box_ap(stage_gt, detections, backend)
        print("Per-stage box AP (columns: AP at each IoU threshold):")
        print(stage_ap_table(results))
        report["per_stage_bbox"] = results
        with open(os.path.join(output, "per_stage_ap.json"), "w") as f:
            json.dump(json_safe(results), f, indent=1, allow_nan=False)
        plot_per_stage_ap(results, os.path.join(output, "per_stage_ap.png"), title=os.path.basename(args.results))
        written.append(os.path.join(output, "per_stage_ap.png"))
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(json_safe(report), f, indent=1, allow_nan=False)
    print(f"Wrote {output}: metrics.json, " + ", ".join(os.path.basename(p) for p in written))
    return report


if __name__ == "__main__":
    exit_on_user_error(main, sys.argv[1:])
