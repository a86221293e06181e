"""Training curves of a run, from its `metrics.json`, as PNGs.

    python -m cascade_det.plot_metrics output/shapes_cascade_rcnn_R_18_FPN
    python -m cascade_det.plot_metrics OUTPUT_DIR --output curves/

Written into --output (default: a new `curves_<N>/` folder in OUTPUT_DIR; nothing existing is overwritten):
  losses.png      the total loss and the RPN's losses, and per cascade stage its classification and box losses
                  (one panel per stage: the paper's stages side by side), against the iteration;
  lr.png          the learning rate;
  ap.png          every evaluation's box (and mask) AP, AP50 and AP75, and with per-stage evaluation each stage's
                  AP and the ensemble's, against the iteration of the evaluated checkpoint.
Reads Detectron2's metrics.json lines as they are (null or NaN for a metric that could not be computed is left
out of its curve); lines of a resumed run that repeat an iteration keep the later value.
"""

import argparse
import json
import os
import re
import sys
from collections import defaultdict
from typing import Dict, List

from .errors import InputError, MissingFileError, add_debug_argument, exit_on_user_error
from .outputs import next_free_path, refuse_existing

__all__ = ["main", "read_metrics"]

_STAGE_LOSS = re.compile(r"^loss_(\w+?)_stage(\d+)$")


def read_metrics(path: str) -> Dict[str, Dict[int, float]]:
    """{metric: {iteration: value}} of a metrics.json (JSON lines); a line that is not JSON is an error naming it."""
    series: Dict[str, Dict[int, float]] = defaultdict(dict)
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                iteration = int(record["iteration"])
            except (ValueError, KeyError, TypeError) as e:
                raise InputError(f"{path}, line {number}: not a metrics record ({e}): {line[:120]!r}") from e
            for key, value in record.items():
                if key != "iteration" and isinstance(value, (int, float)) and value == value:  # not NaN
                    series[key][iteration] = float(value)
    return dict(series)


def _plot(ax, series: Dict[int, float], label: str, **style) -> None:
    iterations = sorted(series)
    ax.plot(iterations, [series[i] for i in iterations], label=label, **style)


def _save(fig, path: str, written: List[str]) -> None:
    fig.tight_layout()
    fig.savefig(path)
    written.append(path)


def plot_losses(series, folder: str, written: List[str]) -> None:
    from matplotlib import pyplot as plt

    stages = sorted({int(m.group(2)) for k in series if (m := _STAGE_LOSS.match(k))})
    fig, axes = plt.subplots(1, 1 + len(stages), figsize=(4.5 * (1 + len(stages)), 3.6), dpi=100, squeeze=False)
    overall = axes[0][0]
    for key in ("total_loss", "loss_rpn_cls", "loss_rpn_loc"):
        if key in series:
            _plot(overall, series[key], key)
    for key in sorted(k for k in series if k.startswith("loss_") and not _STAGE_LOSS.match(k)):
        if key not in ("loss_rpn_cls", "loss_rpn_loc"):
            _plot(overall, series[key], key)
    overall.set_title("losses")
    for ax, stage in zip(axes[0][1:], stages):
        for key in sorted(k for k in series if (m := _STAGE_LOSS.match(k)) and int(m.group(2)) == stage):
            _plot(ax, series[key], _STAGE_LOSS.match(key).group(1))
        ax.set_title(f"stage {stage}")
    for ax in axes[0]:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, os.path.join(folder, "losses.png"), written)
    plt.close(fig)


def plot_lr(series, folder: str, written: List[str]) -> None:
    from matplotlib import pyplot as plt

    if "lr" not in series:
        return
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=100)
    _plot(ax, series["lr"], "lr")
    ax.set_xlabel("iteration")
    ax.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    _save(fig, os.path.join(folder, "lr.png"), written)
    plt.close(fig)


def plot_ap(series, folder: str, written: List[str]) -> None:
    from matplotlib import pyplot as plt

    coco = [k for k in ("bbox/AP", "bbox/AP50", "bbox/AP75", "segm/AP", "segm/AP50", "segm/AP75") if k in series]
    stages = sorted(k for k in series if re.match(r"^per_stage_bbox/[^/]+/AP$", k))
    if not coco and not stages:
        return
    fig, axes = plt.subplots(1, 1 + bool(stages), figsize=(5 * (1 + bool(stages)), 3.6), dpi=100, squeeze=False)
    for key in coco:
        _plot(axes[0][0], series[key], key, marker="o")
    axes[0][0].set_title("COCO metrics")
    if stages:
        for key in stages:
            name = key.split("/")[1]
            style = {"linestyle": "--", "color": "black"} if name == "ensemble" else {"marker": "o"}
            _plot(axes[0][1], series[key], name, **style)
        axes[0][1].set_title("box AP per stage")
    for ax in axes[0]:
        ax.set_xlabel("iteration")
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, os.path.join(folder, "ap.png"), written)
    plt.close(fig)


def main(argv=None) -> List[str]:
    parser = argparse.ArgumentParser(
        prog="python -m cascade_det.plot_metrics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("output_dir", help="a training run's output dir (holds metrics.json)")
    parser.add_argument("--output", default="", help="folder to write into (default: OUTPUT_DIR/curves_<N>/)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    path = os.path.join(args.output_dir, "metrics.json")
    if not os.path.isfile(path):
        raise MissingFileError(f"{path} does not exist: give the output dir of a training run")
    series = read_metrics(path)
    if not series:
        raise InputError(f"{path} holds no metrics yet")
    folder = args.output or next_free_path(args.output_dir, "curves_{}")
    for name in ("losses.png", "lr.png", "ap.png"):
        refuse_existing(os.path.join(folder, name))
    import matplotlib

    matplotlib.use("Agg")
    os.makedirs(folder, exist_ok=True)
    written: List[str] = []
    plot_losses(series, folder, written)
    plot_lr(series, folder, written)
    plot_ap(series, folder, written)
    print(f"Wrote {', '.join(written)}")
    return written


if __name__ == "__main__":
    exit_on_user_error(main, sys.argv[1:])
