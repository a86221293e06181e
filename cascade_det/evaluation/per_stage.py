"""Per-stage COCO evaluation: the AP of each cascade stage's own detections, and of the ensemble, at every IoU
threshold 0.50..0.95 - the paper's central figure (detection quality rises stage by stage at high IoU), for the
user's own model and data.

Stage t's detections are its refined boxes scored by its classifier alone (post-processed as usual: score
threshold, NMS, top-k). "ensemble" is what the model outputs (the configured `test_score_ensemble` on the last
stage's boxes). They reach the evaluator as Detectron2 evaluators get everything, in the model's outputs: the cascade
heads with `return_stage_detections=True` add each stage's detections as rows with a `stage` field.
"""

import contextlib
import copy
import io
import json
import logging
import os
from collections import OrderedDict
from typing import Dict, List

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tabulate import tabulate

from detectron2.data import MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.utils import comm

from ..modeling import split_stage_detections

__all__ = ["IOU_THRESHOLDS", "FinalDetections", "PerStageCOCOEvaluator", "coco_box_ap", "plot_per_stage_ap"]

logger = logging.getLogger(__name__)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


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


class PerStageCOCOEvaluator(DatasetEvaluator):
    """
    Box AP per cascade stage and for the ensemble on a COCO-format dataset, from the stage detections in the model's
    outputs (cascade heads with `return_stage_detections=True`). Results, under the task name "per_stage_bbox":
    {"stage0/AP", "stage0/AP50", "stage0/AP75", "stage0/AP@0.55", ..., "ensemble/AP", ...}, in percent; NaN where a
    stage made no detection (as COCOEvaluator reports it).
    Also logs a table and writes `per_stage_ap.json` and `per_stage_ap.png` (AP against IoU threshold, a line
    per stage) to `output_dir`.
    """

    def __init__(self, dataset_name: str, output_dir: str = None):
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._metadata = MetadataCatalog.get(dataset_name)
        self._predictions: Dict[str, List[dict]] = {}

    def reset(self):
        self._predictions = {"ensemble": []}

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
            self._predictions["ensemble"].extend(instances_to_coco_json(own, inp["image_id"]))
            for t, stage in enumerate(stages):
                self._predictions.setdefault(f"stage{t}", []).extend(instances_to_coco_json(stage, inp["image_id"]))

    def evaluate(self):
        gathered = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return {}
        num_stages = max(len(part) - 1 for part in gathered)
        names = [f"stage{t}" for t in range(num_stages)] + ["ensemble"]
        predictions = {name: [p for part in gathered for p in part.get(name, [])] for name in names}
        coco_gt = self._coco_gt()
        to_dataset_id = {v: k for k, v in getattr(self._metadata, "thing_dataset_id_to_contiguous_id", {}).items()}
        results = OrderedDict((name, coco_box_ap(coco_gt, predictions[name], to_dataset_id)) for name in names)
        self._report(results)
        # One level of keys, as Detectron2's printing and result checks expect: "stage0/AP", "ensemble/AP@0.90".
        return {"per_stage_bbox": {f"{name}/{k}": v for name, r in results.items() for k, v in r.items()}}

    def _coco_gt(self) -> COCO:
        json_file = getattr(self._metadata, "json_file", None)
        if json_file is None or not os.path.isfile(json_file):
            json_file = os.path.join(self._output_dir or ".", f"{self._dataset_name}_coco_format.json")
            convert_to_coco_json(self._dataset_name, json_file)
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(json_file)

    def _report(self, results: Dict[str, Dict[str, float]]) -> None:
        headers = ["", "AP"] + [f"{t:.2f}" for t in IOU_THRESHOLDS]
        rows = [[name, r["AP"]] + [r[f"AP@{t:.2f}"] for t in IOU_THRESHOLDS] for name, r in results.items()]
        logger.info(
            "Per-stage box AP on %s (columns: AP at each IoU threshold):\n%s",
            self._dataset_name,
            tabulate(rows, headers=headers, floatfmt=".1f", tablefmt="pipe"),
        )
        if not self._output_dir:
            return
        os.makedirs(self._output_dir, exist_ok=True)
        with open(os.path.join(self._output_dir, "per_stage_ap.json"), "w") as f:
            json.dump(results, f, indent=1)
        plot_per_stage_ap(results, os.path.join(self._output_dir, "per_stage_ap.png"), title=self._dataset_name)


def coco_box_ap(coco_gt: COCO, predictions: List[dict], to_dataset_id: Dict[int, int]) -> Dict[str, float]:
    """COCO box AP (percent) of `predictions` (COCO json dicts with contiguous category ids): "AP" (mean over
    IoU 0.50:0.95), "AP50", "AP75" and "AP@{t:.2f}" for each IoU threshold t, all areas, 100 detections. No
    predictions give NaN everywhere, as Detectron2's COCOEvaluator reports them."""
    predictions = copy.deepcopy(predictions)
    for p in predictions:
        p["category_id"] = to_dataset_id.get(p["category_id"], p["category_id"])
    if not predictions:
        return {
            "AP": float("nan"),
            "AP50": float("nan"),
            "AP75": float("nan"),
            **{f"AP@{t:.2f}": float("nan") for t in IOU_THRESHOLDS},
        }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(predictions), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    # precision: (IoU thresholds, recall points, classes, area ranges, max dets); -1 where undefined.
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    per_iou = [float(np.mean(p[p > -1])) * 100 if (p > -1).any() else float("nan") for p in precision]
    result = {"AP": float(coco_eval.stats[0]) * 100, "AP50": per_iou[0], "AP75": per_iou[5]}
    result.update({f"AP@{t:.2f}": ap for t, ap in zip(IOU_THRESHOLDS, per_iou)})
    return result


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
