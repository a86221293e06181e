"""Per-stage COCO evaluation: the AP of each cascade stage's own detections, and of the ensemble, at every IoU
threshold 0.50..0.95 - the paper's central figure (detection quality rises stage by stage at high IoU), for the
user's own model and data.

Stage t's detections are its refined boxes scored by its classifier alone (post-processed as usual: score
threshold, NMS, top-k). "ensemble" is what the model outputs (the configured `test_score_ensemble` on the last
stage's boxes). They reach the evaluator as Detectron2 evaluators get everything, in the model's outputs: the cascade
heads with `return_stage_detections=True` add each stage's detections as rows with a `stage` field.

Detections are kept as arrays (image_id, x, y, w, h, score, category), the ground truth is indexed once for all the
sets, and the sets are scored by `vectorized_coco` (pycocotools' numbers; or pycocotools itself): `coco_backend`.
"""

import concurrent.futures
import json
import logging
import multiprocessing
import os
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
from tabulate import tabulate

from detectron2.data import MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_dict
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..image_ids import dataset_image_numbers, with_integer_image_ids
from ..modeling import split_stage_detections
from .coco_backend import COCO_METRICS, evaluate_boxes, load_gt, mean_percent, summary_percent

__all__ = [
    "IOU_THRESHOLDS",
    "FinalDetections",
    "PerStageCOCOEvaluator",
    "box_ap",
    "contiguous_to_dataset_ids",
    "detections_array",
    "evaluate_sets",
    "ground_truth_source",
    "plot_per_stage_ap",
    "stage_ap_table",
]

logger = logging.getLogger(__name__)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
DETECTIONS_FILE = (
    "per_stage_detections.npz"  # one (D, 7) array per stage name, read by `python -m cascade_det.evaluate`
)


class FinalDetections(DatasetEvaluator):
    """Wraps an evaluator so that it sees the model's own detections only (not the stage detections that cascade
    heads with `return_stage_detections` add): a COCOEvaluator then scores exactly what the model predicts."""

    def __init__(self, evaluator: DatasetEvaluator):
        self.evaluator = evaluator

    def reset(self):
        self.evaluator.reset()

    def process(self, inputs, outputs):
        outputs = [
            {**o, "instances": split_stage_detections(o["instances"])[0]} if "instances" in o else o for o in outputs
        ]
        self.evaluator.process(inputs, outputs)

    def evaluate(self):
        return self.evaluator.evaluate()


def contiguous_to_dataset_ids(dataset_name: str) -> Dict[int, int]:
    """The model's class index -> the dataset's category id (the inverse of the dataset's
    thing_dataset_id_to_contiguous_id; {} where it has none)."""
    mapping = getattr(MetadataCatalog.get(dataset_name), "thing_dataset_id_to_contiguous_id", {}) or {}
    return {v: k for k, v in mapping.items()}


def ground_truth_source(dataset_name: str):
    """A dataset's ground truth: its json file, or (for a dataset registered without one) its COCO-format dict."""
    json_file = getattr(MetadataCatalog.get(dataset_name), "json_file", None)
    if json_file and os.path.isfile(json_file):
        return json_file
    return convert_to_coco_dict(dataset_name)


def detections_array(instances, image_id: int, to_dataset_id: Optional[Dict[int, int]] = None) -> np.ndarray:
    """One image's detections (Instances with pred_boxes XYXY, scores, pred_classes) as COCO result rows (D, 7):
    image_id, x, y, w, h, score, category id of the dataset (through `to_dataset_id`)."""
    boxes = instances.pred_boxes.tensor.numpy().astype(np.float64)
    classes = instances.pred_classes.numpy()
    if to_dataset_id and len(classes):
        # a lookup table, not a dict look-up per detection (100 per image, several sets)
        table = np.arange(max(max(to_dataset_id), int(classes.max())) + 1, dtype=np.int64)
        table[list(to_dataset_id)] = list(to_dataset_id.values())
        classes = table[classes]
    rows = np.empty((len(boxes), 7), dtype=np.float64)
    rows[:, 0] = image_id
    rows[:, 1:3] = boxes[:, :2]
    rows[:, 3:5] = boxes[:, 2:] - boxes[:, :2]
    rows[:, 5] = instances.scores.numpy()
    rows[:, 6] = classes
    return rows


def box_ap(gt, detections: np.ndarray, backend: str = "vectorized") -> Dict[str, float]:
    """COCO box metrics (percent) of `detections` (rows as `detections_array`) against `gt` (`load_gt`): the 12
    numbers of COCOeval.summarize ("AP", "AP50", ..., "ARl") and "AP@{t:.2f}" for each IoU threshold t (all areas,
    100 detections). No detections give NaN everywhere, as Detectron2's COCOEvaluator reports them."""
    evaluated = evaluate_boxes(gt, detections, backend)
    if evaluated is None:
        return {**{k: float("nan") for k in COCO_METRICS}, **{f"AP@{t:.2f}": float("nan") for t in IOU_THRESHOLDS}}
    stats, coco_eval = evaluated
    result = summary_percent(stats)
    # precision: (IoU thresholds, recall points, classes, area ranges, max dets); -1 where undefined.
    precision = coco_eval["precision"][:, :, :, 0, -1]
    for t, p in zip(IOU_THRESHOLDS, precision):
        result[f"AP@{t:.2f}"] = mean_percent(p)
    return result


_FORKED = None  # (ground truth, sets, backend): what forked children read instead of unpickling it


def _evaluate_forked(index: int) -> Dict[str, float]:
    gt, sets, backend = _FORKED
    return box_ap(gt, sets[index], backend)


def evaluate_sets(gt_source, sets: List[np.ndarray], backend: str = "vectorized") -> List[Dict[str, float]]:
    """`box_ap` of several detection sets against one ground truth (a json path or a COCO-format dict), indexed
    once; the sets are scored in parallel processes where there are cores (one per set at most) and they are large
    enough to be worth a process (the children are forked after the indexing and inherit it)."""
    global _FORKED
    gt = load_gt(gt_source, backend)
    workers = min(len(sets), os.cpu_count() or 1)
    large = sum(len(s) for s in sets) >= 50_000  # a process costs about as much as evaluating 50,000 detections
    if workers > 1 and large and "fork" in multiprocessing.get_all_start_methods():
        _FORKED = (gt, sets, backend)  # before the children fork: they read it without pickling
        try:
            context = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                return list(pool.map(_evaluate_forked, range(len(sets))))
        finally:
            _FORKED = None
    return [box_ap(gt, detections, backend) for detections in sets]


class PerStageCOCOEvaluator(DatasetEvaluator):
    """
    Box AP per cascade stage and for the ensemble on a detection dataset, from the stage detections in the model's
    outputs (cascade heads with `return_stage_detections=True`). Results, under the task name "per_stage_bbox":
    {"stage0/AP", "stage0/AP50", ..., "stage0/AP@0.55", ..., "ensemble/AP", ...}, in percent; NaN where a stage made
    no detection (as COCOEvaluator reports it).
    `backend`: what scores the sets (`coco_backend.BOX_BACKENDS`; a run picks it with `per_stage_backend`).
    Also logs a table and writes to `output_dir`: `per_stage_ap.json`, `per_stage_ap.png` (AP against IoU threshold,
    a line per stage) and the detections (`per_stage_detections.npz`, for `python -m cascade_det.evaluate`).
    """

    def __init__(self, dataset_name: str, output_dir: Optional[str] = None, backend: str = "vectorized"):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._backend = backend
        self._to_dataset_id = contiguous_to_dataset_ids(dataset_name)
        self._detections: Dict[str, list] = {}
        self._image_numbers: Optional[Dict] = None  # string image id -> integer, built at the first string id
        self._gt_dict: Optional[dict] = None  # the ground truth as a dict, read when string ids need it

    def _image_number(self, image_id) -> int:
        """The integer an image's detections carry: its id, or for string ids (VOC) `dataset_image_numbers`' number,
        the same in every process (it depends on the ground truth only)."""
        if isinstance(image_id, (int, np.integer)) and not isinstance(image_id, bool):
            return int(image_id)
        if self._image_numbers is None:
            self._image_numbers = dataset_image_numbers(self._ground_truth_dict())
        if image_id not in self._image_numbers:
            raise ValueError(
                f"Per-stage evaluation of {self._dataset_name}: image id {image_id!r} is not in its ground truth"
            )
        return self._image_numbers[image_id]

    def reset(self):
        self._detections = {"ensemble": []}

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            instances = out["instances"]
            if not instances.has("stage"):
                raise ValueError(
                    "Per-stage evaluation: the model's outputs carry no stage detections. Its roi_heads must be "
                    "CascadeRCNNROIHeads built with return_stage_detections=True (the trainer sets it when per-stage "
                    "evaluation is on)."
                )
            own, stages = split_stage_detections(instances.to("cpu"))
            image = self._image_number(inp["image_id"])
            self._detections["ensemble"].append(detections_array(own, image, self._to_dataset_id))
            for t, stage in enumerate(stages):
                rows = detections_array(stage, image, self._to_dataset_id)
                self._detections.setdefault(f"stage{t}", []).append(rows)

    def evaluate(self):
        gathered = comm.gather((self._detections, self._image_numbers is not None), dst=0)
        if not comm.is_main_process():
            return {}
        string_ids = any(named for _, named in gathered)
        gathered = [part for part, _ in gathered]
        num_stages = max(len(part) - 1 for part in gathered)
        names = [f"stage{t}" for t in range(num_stages)] + ["ensemble"]
        detections = {
            name: np.concatenate([rows for part in gathered for rows in part.get(name, [])] or [np.zeros((0, 7))])
            for name in names
        }
        if string_ids:
            gt = self._ground_truth_dict()
            # This process may have seen integer ids only, where another saw strings: the numbers from the truth.
            source = with_integer_image_ids(gt, self._image_numbers or dataset_image_numbers(gt))
        else:
            source = ground_truth_source(self._dataset_name)
        results = OrderedDict(zip(names, evaluate_sets(source, [detections[n] for n in names], self._backend)))
        logger.info(
            "Per-stage box AP on %s (columns: AP at each IoU threshold):\n%s",
            self._dataset_name,
            stage_ap_table(results),
        )
        if self._output_dir:
            self._write(results, detections)
        # One level of keys, as Detectron2's printing and result checks expect: "stage0/AP", "ensemble/AP@0.90".
        return {"per_stage_bbox": {f"{name}/{k}": v for name, r in results.items() for k, v in r.items()}}

    def _ground_truth_dict(self) -> dict:
        """The ground truth as a COCO-format dict, read once per evaluator."""
        if self._gt_dict is None:
            source = ground_truth_source(self._dataset_name)
            if not isinstance(source, dict):
                with open(source) as f:
                    source = json.load(f)
            self._gt_dict = source
        return self._gt_dict

    def _write(self, results, detections) -> None:
        os.makedirs(self._output_dir, exist_ok=True)
        with open(os.path.join(self._output_dir, "per_stage_ap.json"), "w") as f:
            json.dump(results, f, indent=1)
        np.savez_compressed(os.path.join(self._output_dir, DETECTIONS_FILE), **detections)
        plot_per_stage_ap(results, os.path.join(self._output_dir, "per_stage_ap.png"), title=self._dataset_name)


def stage_ap_table(results: Dict[str, Dict[str, float]]) -> str:
    """The per-stage table: a row per detection set, AP and AP at each IoU threshold."""
    headers = ["", "AP"] + [f"{t:.2f}" for t in IOU_THRESHOLDS]
    rows = [[name, r["AP"]] + [r[f"AP@{t:.2f}"] for t in IOU_THRESHOLDS] for name, r in results.items()]
    return tabulate(rows, headers=headers, floatfmt=".1f", tablefmt="pipe")


def plot_per_stage_ap(results: Dict[str, Dict[str, float]], path: str, title: str = "") -> None:
    """AP against IoU threshold, one line per stage and one for the ensemble (the paper's Figure 1(c) style)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, r in results.items():
        style = {"linestyle": "--", "color": "black"} if name == "ensemble" else {"marker": "o"}
        ax.plot(IOU_THRESHOLDS, [r[f"AP@{t:.2f}"] for t in IOU_THRESHOLDS], label=f"{name} (AP {r['AP']:.1f})", **style)
    ax.set_xlabel("IoU threshold")
    ax.set_ylabel("AP (%)")
    ax.set_title(f"Per-stage box AP: {title}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
