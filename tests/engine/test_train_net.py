"""train_net.py end to end, as a user runs it: train, evaluate, resume, --eval-only, 2 CPU processes, yacs; and what
its main refuses, with the key and the fix named."""

import json
import os

import pytest

from cascade_det.errors import Error

from ..conftest import run_train_net
from ..reliability.conftest import run_main

LAZY = "configs/Shapes/cascade_rcnn_R_18_FPN.py"
YACS = "configs/Shapes/cascade_rcnn_R_18_FPN.yaml"
# A few iterations at batch 2: the tests check the plumbing, not the accuracy (README's quickstart does that).
TINY = ["dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0"]


def refusal(*argv: str) -> str:
    """`Type: message` of the user error train_net.py's main stops with on `argv`, run in this process (what such a
    refusal prints from a real process, one line without a traceback, is tests/test_errors.py's)."""
    error = run_main(*argv)
    assert isinstance(error, Error), repr(error)
    return f"{type(error).__name__}: {error}"


def metrics_lines(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def eval_only(output_dir, *overrides):
    """train_net.py --eval-only of the run's final model, into the run's folder."""
    return run_train_net(
        "--config-file",
        LAZY,
        "--eval-only",
        f"train.output_dir={output_dir}",
        f"train.init_checkpoint={os.path.join(output_dir, 'model_final.pth')}",
        *overrides,
        *TINY,
    )


def eval_ap(output_dir):
    return [m["bbox/AP"] for m in metrics_lines(output_dir) if "bbox/AP" in m]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("lazy_run"))
    proc = run_train_net(
        "--config-file",
        LAZY,
        f"train.output_dir={out}",
        "train.max_iter=4",
        "train.eval_period=4",
        "train.checkpointer.period=2",
        *TINY,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    return out, proc.stdout


def test_training_writes_checkpoints_metrics_events_and_evaluates(trained):
    out, log = trained
    for name in ("model_final.pth", "last_checkpoint", "metrics.json", "config.yaml"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out))
    assert "loss_cls_stage2" in metrics_lines(out)[0]
    assert len(eval_ap(out)) == 1
    assert "Evaluation results for bbox" in log and "Done. Model: " in log
    assert "Warning" not in log  # no Python warning in a normal run (cascade_det.compat silences Detectron2's)
    with open(os.path.join(out, "log.txt")) as f:
        assert "\x1b[" not in f.read()  # the log file has no terminal colour codes


def test_per_stage_evaluation_reports_each_stage_in_log_metrics_and_plot(trained):
    out, log = trained
    metrics = [m for m in metrics_lines(out) if "bbox/AP" in m][0]
    for name in ("stage0", "stage1", "stage2", "ensemble"):
        for key in ("AP", "AP50", "AP@0.95"):
            assert f"per_stage_bbox/{name}/{key}" in metrics
    # The ensemble is what the model outputs: its AP is the COCOEvaluator's.
    assert metrics["per_stage_bbox/ensemble/AP"] == pytest.approx(metrics["bbox/AP"], abs=1e-4)
    assert "Per-stage box AP on cascade_shapes_val" in log
    # Each evaluation has a folder of its own, named by the iteration of the checkpoint it evaluated.
    assert os.path.getsize(os.path.join(out, "inference", "iter_0000003", "per_stage_ap.png")) > 1000


def test_eval_only_reproduces_the_training_evaluation(trained):
    out, _ = trained
    proc = eval_only(out)
    assert proc.returncode == 0, proc.stdout[-4000:]
    train_ap, eval_only_ap = eval_ap(out)  # --eval-only appended its numbers to metrics.json
    assert eval_only_ap == pytest.approx(train_ap, abs=1e-6)
    # Its outputs and config went to a folder of its own; the training run's files are untouched.
    eval_dir = os.path.join(out, "inference", "eval_1")
    assert os.path.isfile(os.path.join(eval_dir, "coco_instances_results.json"))
    assert os.path.isfile(os.path.join(eval_dir, "config.yaml")) and os.path.isfile(os.path.join(eval_dir, "log.txt"))


def test_new_run_refuses_to_overwrite_a_previous_run_and_resume_continues_it(trained):
    out, _ = trained
    error = refusal("--config-file", LAZY, f"train.output_dir={out}", "train.max_iter=6", *TINY)
    assert "already holds a training run" in error and "--resume" in error
    proc = run_train_net(
        "--config-file",
        LAZY,
        "--resume",
        f"train.output_dir={out}",
        "train.max_iter=6",
        "train.eval_period=0",
        "train.log_period=1",
        *TINY,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Loading scheduler from state_dict" in proc.stdout
    iterations = [m["iteration"] for m in metrics_lines(out) if "total_loss" in m]
    assert max(iterations) == 5 and 4 in iterations  # resumed at iteration 4, not from 0


def test_eval_only_without_weights_is_an_error(tmp_path):
    assert "train.init_checkpoint=PATH" in refusal("--config-file", LAZY, "--eval-only", f"train.output_dir={tmp_path}")


def test_unknown_yacs_config_key_is_named(tmp_path):
    assert "SOLVER.MAX_ITERS" in refusal("--config-file", YACS, "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITERS", "3")


def test_two_cpu_processes_train_and_evaluate_over_gloo(tmp_path):
    proc = run_train_net(
        "--num-gpus",
        "2",
        "--config-file",
        LAZY,
        f"train.output_dir={tmp_path}",
        "train.max_iter=2",
        "train.eval_period=2",
        *TINY,
        num_threads=1,
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Rank of current process: 0. World size: 2" in proc.stdout
    assert len(eval_ap(str(tmp_path))) == 1 and os.path.isfile(os.path.join(tmp_path, "model_final.pth"))


def test_yacs_config_trains_and_evaluates_with_model_weights(tmp_path):
    common = ["SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(tmp_path)]
    # Detectron2's EvalHook evaluates at the end of training whatever the period.
    proc = run_train_net("--config-file", YACS, "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD", "0", *common)
    assert proc.returncode == 0, proc.stdout[-4000:]
    weights = os.path.join(tmp_path, "model_final.pth")
    proc = run_train_net("--config-file", YACS, "--eval-only", "MODEL.WEIGHTS", weights, *common)
    assert proc.returncode == 0, proc.stdout[-4000:]
    train_ap, eval_only_ap = eval_ap(str(tmp_path))
    assert eval_only_ap == pytest.approx(train_ap, abs=1e-6)


def test_missing_weights_and_config_files_are_named(tmp_path):
    missing = tmp_path / "nope.pth"
    error = refusal(
        "--config-file", LAZY, "--eval-only", f"train.init_checkpoint={missing}", f"train.output_dir={tmp_path}"
    )
    assert f"train.init_checkpoint={missing} does not exist" in error
    assert "--config-file configs/no_such_config.py does not exist" in refusal(
        "--config-file", "configs/no_such_config.py"
    )


def test_missing_coco_says_where_it_looked_and_how_to_point_elsewhere(tmp_path):
    error = refusal("--config-file", "configs/COCO/cascade_rcnn_R_50_FPN_1x.py", f"train.output_dir={tmp_path}")
    assert "coco/annotations/instances_train2017.json does not exist" in error and "DETECTRON2_DATASETS" in error


def test_eval_only_refuses_a_checkpoint_carrying_code(tmp_path):
    import torch

    from ..test_weights import CodePayload

    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "extra": CodePayload(str(marker))}, str(path))
    error = refusal(
        "--config-file", LAZY, "--eval-only", f"train.init_checkpoint={path}", f"train.output_dir={tmp_path}"
    )
    assert "UnsafeCheckpointError" in error and "allow_unsafe_pickle" in error
    assert not marker.exists()


def test_eval_only_with_test_time_augmentation_reports_plain_and_tta_metrics_per_stage(trained):
    out, _ = trained
    proc = eval_only(out, "test.aug.enabled=True", "test.aug.min_sizes=[128]")  # the test size, and flipped
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Running inference with test-time augmentation" in proc.stdout
    last = metrics_lines(out)[-1]
    for key in ("bbox/AP", "bbox_TTA/AP", "per_stage_bbox_TTA/stage0/AP", "per_stage_bbox_TTA/ensemble/AP"):
        assert key in last, key
    # The TTA ensemble row is what the TTA model outputs: the COCOEvaluator's AP of it.
    assert last["per_stage_bbox_TTA/ensemble/AP"] == pytest.approx(last["bbox_TTA/AP"], abs=1e-4)
    folders = sorted(os.listdir(os.path.join(out, "inference")))
    eval_dir = os.path.join(out, "inference", [f for f in folders if f.startswith("eval_")][-1])
    assert os.path.isfile(os.path.join(eval_dir, "TTA", "coco_instances_results.json"))
