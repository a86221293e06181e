"""Detectron2's own tools run against cascade_det's configs and datasets through `python -m cascade_det.run_tool`."""

import os
import subprocess
import sys

from .conftest import ROOT, VAL_IMAGES


def test_detectron2_visualize_data_reads_our_yacs_config_and_draws_our_dataset(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cascade_det.run_tool",
            "visualize_data",
            "--config-file",
            "configs/Shapes/cascade_rcnn_R_18_FPN.yaml",
            "--source",
            "annotation",
            "--output",
            str(tmp_path),
            "DATASETS.TRAIN",
            '("cascade_shapes_val",)',
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".png")]) == VAL_IMAGES


def test_detectron2_analyze_model_counts_our_cascade_without_caffe2():
    out = subprocess.run(
        [sys.executable, "-m", "cascade_det.run_tool", "analyze_model", "--tasks", "parameter", "--config-file"]
        + ["configs/Shapes/cascade_rcnn_R_18_FPN.yaml", "MODEL.DEVICE", "cpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "roi_heads.box_head.2" in out.stdout + out.stderr
