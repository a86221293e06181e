"""Detectron2's own tools (its `tools/` scripts, run with `python -m cascade_det.run_tool NAME`) and `DefaultPredictor`
on our configs and models, as a Detectron2 user runs them on its built-in cascade: training and evaluation
(`train_net.py` on a yacs config, `lazyconfig_train_net.py` on a LazyConfig, `plain_train_net.py`), `benchmark.py`
and `visualize_json_results.py` on what they wrote."""

import os
import re

import pytest
import torch

from .conftest import QUICKSTART, ROOT, run_python

YACS = "configs/Shapes/cascade_rcnn_R_18_FPN.yaml"
TINY_YACS = ["SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "MODEL.DEVICE", "cpu"]


def run_tool(*args, timeout=600):
    """`python -m cascade_det.run_tool ARGS`, which must succeed; returns its output."""
    proc = run_python("-m", "cascade_det.run_tool", *args, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def box_ap(log):
    """The bbox AP Detectron2's print_csv_format wrote last ("copypaste: AP,AP50,..." then the numbers)."""
    rows = re.findall(r"copypaste: Task: bbox\n.*copypaste: AP,AP50.*\n.*copypaste: ([0-9.nan,]+)", log)
    assert rows, log[-3000:]
    return float(rows[-1].split(",")[0])


@pytest.fixture(scope="module")
def yacs_run(tmp_path_factory):
    """Detectron2's tools/train_net.py (DefaultTrainer) trains our yacs config 2 iterations and evaluates it."""
    out = str(tmp_path_factory.mktemp("d2_train_net"))
    log = run_tool("train_net", "--config-file", YACS, "OUTPUT_DIR", out, *TINY_YACS)
    return out, log


def test_detectron2_train_net_trains_and_evaluates_our_yacs_config_and_evaluates_it_again(yacs_run):
    out, log = yacs_run
    assert os.path.isfile(os.path.join(out, "model_final.pth"))
    assert "CascadeRCNNROIHeads" in log and "loss_cls_stage2" in log
    again = run_tool(
        "train_net",
        "--config-file",
        YACS,
        "--eval-only",
        "OUTPUT_DIR",
        out,
        "MODEL.WEIGHTS",
        os.path.join(out, "model_final.pth"),
        *TINY_YACS,
    )
    assert box_ap(again) == pytest.approx(box_ap(log), abs=1e-4)


def test_detectron2_lazyconfig_train_net_trains_and_evaluates_our_lazyconfig(tmp_path):
    log = run_tool(
        "lazyconfig_train_net",
        "--config-file",
        QUICKSTART,
        f"train.output_dir={tmp_path}",
        "train.max_iter=2",
        "dataloader.train.total_batch_size=2",
        "dataloader.train.num_workers=0",
        "dataloader.test.num_workers=0",
    )
    assert os.path.isfile(tmp_path / "model_final.pth") and "loss_box_reg_stage1" in log
    assert box_ap(log) >= 0


def test_detectron2_plain_train_net_trains_our_yacs_config(tmp_path):
    log = run_tool("plain_train_net", "--config-file", YACS, "OUTPUT_DIR", str(tmp_path), *TINY_YACS)
    assert os.path.isfile(tmp_path / "model_final.pth") and box_ap(log) >= 0


def test_detectron2_benchmark_times_inference_of_our_model(yacs_run):
    out, _ = yacs_run
    weights = os.path.join(out, "model_final.pth")
    log = run_tool(
        "benchmark", "--task", "eval", "--config-file", YACS, "MODEL.WEIGHTS", weights, "MODEL.DEVICE", "cpu"
    )
    assert "300 iters in" in log


def test_detectron2_visualize_json_results_draws_our_models_results(yacs_run, tmp_path):
    out, _ = yacs_run
    results = os.path.join(out, "inference", "coco_instances_results.json")
    run_tool("visualize_json_results", "--input", results, "--output", str(tmp_path), "--dataset", "cascade_shapes_val")
    assert len(os.listdir(tmp_path)) == 200  # one drawing (predictions beside ground truth) per image


def test_detectron2_default_predictor_runs_our_yacs_model(yacs_run, shapes_image):
    import cv2

    from cascade_det.config import add_cascade_config

    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    out, _ = yacs_run
    cfg = add_cascade_config(get_cfg())
    cfg.merge_from_file(os.path.join(ROOT, YACS))
    cfg.MODEL.WEIGHTS, cfg.MODEL.DEVICE = os.path.join(out, "model_final.pth"), "cpu"
    instances = DefaultPredictor(cfg)(cv2.imread(shapes_image))["instances"]
    assert len(instances) > 0 and instances.image_size == (128, 128)
    assert instances.pred_classes.max() < 4 and torch.isfinite(instances.scores).all()


@pytest.mark.skipif(
    os.environ.get("CASCADE_DET_D2") != "main",
    reason="Detectron2 0.6's tools/deploy/export_model.py imports Caffe2Tracer (caffe2, gone from PyTorch 2): it "
    "cannot run for its built-in cascade either; the Detectron2-main phase runs main's, and "
    "tests/test_detectron2_tracing.py traces with 0.6's TracingAdapter",
)
def test_detectron2_export_model_traces_our_model_to_torchscript_and_evaluates_it(yacs_run, tmp_path):
    out, log = yacs_run
    script = os.path.join(os.environ["VIRTUAL_ENV"], "detectron2-main-src", "tools", "deploy", "export_model.py")
    exported = run_tool(
        script,
        "--config-file",
        YACS,
        "--output",
        str(tmp_path),
        "--export-method",
        "tracing",
        "--format",
        "torchscript",
        "--run-eval",
        "MODEL.WEIGHTS",
        os.path.join(out, "model_final.pth"),
        "MODEL.DEVICE",
        "cpu",
    )
    assert os.path.isfile(tmp_path / "model.ts") and "Success." in exported
    assert box_ap(exported) == pytest.approx(box_ap(log), abs=0.5)  # the traced model evaluates as the eager one
