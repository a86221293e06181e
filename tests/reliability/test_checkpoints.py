"""Checkpoints: written atomically, resumed from the newest intact one, refused when they do not fit the model, and
every unreadable weights file named."""

import os
import pickle

import pytest
import torch

from cascade_det.checkpoint import NonFiniteWeightsError, SafeDetectionCheckpointer
from cascade_det.engine.load_checks import CheckpointMismatchError
from cascade_det.weights import WeightsFileError, atomic_write

from .conftest import LAZY, TINY, assert_untouched, log_of, private, run_main, snapshot

FASTER = "configs/Shapes/faster_rcnn_R_18_FPN.py"


def test_a_kill_mid_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    path = tmp_path / "model_0000009.pth"
    path.write_bytes(b"the previous, intact checkpoint")
    with pytest.raises(KeyboardInterrupt), atomic_write(str(path)) as f:
        f.write(b"half of a new checkpoint")
        raise KeyboardInterrupt  # the process is interrupted mid-write
    assert path.read_bytes() == b"the previous, intact checkpoint"
    assert os.listdir(tmp_path) == ["model_0000009.pth"]  # no temporary file left behind


def test_resume_skips_a_truncated_latest_checkpoint_and_takes_the_previous_one(run_copy):
    latest = private(os.path.join(run_copy, "model_final.pth"))
    with open(latest, "r+b") as f:
        f.truncate(os.path.getsize(latest) // 3)  # what a kill during a non-atomic copy leaves
    before = snapshot(run_copy)
    assert (
        run_main("--resume", "--config-file", LAZY, f"train.output_dir={run_copy}", "train.max_iter=5", *TINY) is None
    )
    log = log_of(run_copy)
    assert f"Not resuming from {latest}: {latest} cannot be read as a weights file" in log and "truncated" in log
    assert "Resuming at iteration 4" in log  # from model_0000003.pth
    assert_untouched(
        run_copy,
        {k: v for k, v in before.items() if k not in ("last_checkpoint", "model_final.pth")},
        appended=("metrics.json", "log.txt"),
    )


@pytest.mark.parametrize("pointer", ["", "model_9999999.pth"], ids=["empty", "names-a-missing-file"])
def test_resume_with_a_broken_last_checkpoint_pointer_takes_the_newest_checkpoint(run_copy, pointer):
    with open(private(os.path.join(run_copy, "last_checkpoint")), "w") as f:
        f.write(pointer)
    assert (
        run_main("--resume", "--config-file", LAZY, f"train.output_dir={run_copy}", "train.max_iter=5", *TINY) is None
    )
    log = log_of(run_copy)
    assert f"{os.path.join(run_copy, 'last_checkpoint')} is empty or names a missing file" in log
    assert "Resuming at iteration 4" in log


def test_resume_when_no_checkpoint_can_be_read_is_an_error_naming_the_folder(run_copy):
    for name in ("model_0000001.pth", "model_0000003.pth", "model_final.pth"):
        with open(private(os.path.join(run_copy, name)), "r+b") as f:
            f.truncate(100)
    error = run_main("--resume", "--config-file", LAZY, f"train.output_dir={run_copy}", "train.max_iter=5", *TINY)
    assert isinstance(error, WeightsFileError)
    assert f"none of the 3 checkpoints in {run_copy} can be used" in str(error)


def test_resume_skips_a_checkpoint_with_non_finite_weights(run_copy):
    latest = private(os.path.join(run_copy, "model_final.pth"))
    checkpoint = torch.load(latest, weights_only=False)
    checkpoint["model"]["roi_heads.box_predictor.0.cls_score.weight"][0, 0] = float("nan")
    torch.save(checkpoint, latest)
    assert (
        run_main("--resume", "--config-file", LAZY, f"train.output_dir={run_copy}", "train.max_iter=5", *TINY) is None
    )
    log = log_of(run_copy)
    assert f"Not resuming from {latest}: {latest} holds weights that are not finite" in log
    assert "roi_heads.box_predictor.0.cls_score.weight" in log and "Resuming at iteration 4" in log


def test_non_finite_weights_are_never_written(tmp_path):
    model = torch.nn.Linear(2, 2)
    checkpointer = SafeDetectionCheckpointer(model, str(tmp_path))
    checkpointer.save("model_0000000")
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteWeightsError, match=r"Not writing model_0000001.pth: 1 weight tensors are not finite"):
        checkpointer.save("model_0000001")
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000000.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"


def test_eval_only_with_a_checkpoint_of_another_architecture_is_an_error_not_random_weights(run_copy, tmp_path):
    faster = str(tmp_path / "faster")
    assert run_main("--config-file", FASTER, f"train.output_dir={faster}", "train.max_iter=1", *TINY) is None
    before = snapshot(run_copy)
    weights = os.path.join(faster, "model_final.pth")
    error = run_main(
        "--eval-only", "--config-file", LAZY, f"train.output_dir={run_copy}", f"train.init_checkpoint={weights}", *TINY
    )
    assert isinstance(error, CheckpointMismatchError)
    assert f"{weights} does not hold" in str(error) and "evaluating would score random weights" in str(error)
    assert "train.allow_partial_checkpoint=True" in str(error)
    assert_untouched(run_copy, before)


def test_eval_only_with_a_checkpoint_for_another_number_of_classes_names_both(run_copy, tmp_path):
    checkpoint = torch.load(os.path.join(run_copy, "model_final.pth"), weights_only=False)
    for t in range(3):  # what a model of 7 classes holds
        checkpoint["model"][f"roi_heads.box_predictor.{t}.cls_score.weight"] = torch.zeros(8, 256)
        checkpoint["model"][f"roi_heads.box_predictor.{t}.cls_score.bias"] = torch.zeros(8)
    path = str(tmp_path / "seven_classes.pth")
    torch.save({"model": checkpoint["model"]}, path)
    before = snapshot(run_copy)
    error = run_main(
        "--eval-only", "--config-file", LAZY, f"train.output_dir={run_copy}", f"train.init_checkpoint={path}", *TINY
    )
    assert isinstance(error, CheckpointMismatchError)
    assert f"{path} predicts 7 classes but the model is configured for 4" in str(error)
    assert "model.roi_heads.num_classes=4" in str(error)
    assert_untouched(run_copy, before)


def test_fine_tuning_from_another_class_count_reinitialises_only_the_class_layers(run_copy, tmp_path):
    checkpoint = torch.load(os.path.join(run_copy, "model_final.pth"), weights_only=False)["model"]
    for t in range(3):
        checkpoint[f"roi_heads.box_predictor.{t}.cls_score.weight"] = torch.zeros(8, 256)
        checkpoint[f"roi_heads.box_predictor.{t}.cls_score.bias"] = torch.zeros(8)
    path = str(tmp_path / "seven_classes.pth")
    torch.save({"model": checkpoint}, path)
    out = str(tmp_path / "finetune")
    assert (
        run_main(
            "--config-file", LAZY, f"train.output_dir={out}", f"train.init_checkpoint={path}", "train.max_iter=1", *TINY
        )
        is None
    )
    log = log_of(out)
    assert "Re-initialised the class-dependent layers (roi_heads.box_predictor.0.cls_score.weight" in log
    assert f"{path} has 7 classes, the model 4" in log


def test_training_from_a_file_that_does_not_initialise_the_backbone_is_an_error(tmp_path):
    path = str(tmp_path / "not_a_backbone.pth")
    torch.save({"model": {"roi_heads.box_head.0.fc1.bias": torch.zeros(256)}}, path)
    out = str(tmp_path / "run")
    error = run_main(
        "--config-file", LAZY, f"train.output_dir={out}", f"train.init_checkpoint={path}", "train.max_iter=1", *TINY
    )
    assert isinstance(error, CheckpointMismatchError)
    assert f"{path} does not initialise" in str(error) and "of the backbone's" in str(error)
    assert not os.path.exists(os.path.join(out, "model_final.pth"))
    # The explicit flag lets it through, with a warning.
    out2 = str(tmp_path / "run2")
    assert (
        run_main(
            "--config-file",
            LAZY,
            f"train.output_dir={out2}",
            f"train.init_checkpoint={path}",
            "train.allow_partial_checkpoint=True",
            "train.max_iter=1",
            *TINY,
        )
        is None
    )
    assert "train.allow_partial_checkpoint=True is set" in log_of(out2)


def test_the_load_report_counts_only_tensors_the_file_holds(tmp_path):
    from cascade_det.engine import load_config

    from detectron2.config import instantiate

    model = instantiate(load_config(LAZY).model)
    backbone = {k: v for k, v in model.state_dict().items() if k.startswith("backbone.bottom_up.")}
    without_counters = {k: v for k, v in backbone.items() if not k.endswith("num_batches_tracked")}
    path = str(tmp_path / "backbone.pth")
    torch.save({"model": without_counters}, path)
    checkpointer = SafeDetectionCheckpointer(model)
    checkpointer.load(path)
    report = checkpointer.last_load_report
    assert sorted(report["matched"]) == sorted(without_counters)  # not the BN step counters it did not hold
    assert not any(k.endswith("num_batches_tracked") for k in report["missing"])


def _write(path, kind):
    if kind == "empty":
        open(path, "wb").close()
    elif kind == "garbage":
        with open(path, "wb") as f:
            f.write(b"\x89 this is not a pickle at all \x00\x01")
    elif kind == "list":
        torch.save([torch.zeros(2), torch.ones(2)], path)
    elif kind == "truncated":
        torch.save({"model": {"w": torch.zeros(1000)}}, path)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize(
    "name, kind, message",
    [
        ("empty.pth", "empty", r"empty.pth is empty \(0 bytes\)"),
        ("garbage.pkl", "garbage", r"garbage.pkl cannot be read as a weights file .*not a checkpoint"),
        ("garbage.pth", "garbage", r"garbage.pth cannot be read as a weights file"),
        ("list.pth", "list", r"list.pth holds a list, not a checkpoint"),
        ("truncated.pth", "truncated", r"truncated.pth cannot be read as a weights file .*truncated"),
        ("missing.pth", None, r"train.init_checkpoint=.*missing.pth does not exist"),
    ],
)
def test_an_unusable_weights_file_is_an_error_naming_it(tmp_path, name, kind, message):
    path = str(tmp_path / name)
    if kind:
        _write(path, kind)
    out = tmp_path / "run"
    error = run_main(
        "--config-file", LAZY, f"train.output_dir={out}", f"train.init_checkpoint={path}", "train.max_iter=1", *TINY
    )
    assert isinstance(error, (WeightsFileError, FileNotFoundError)), repr(error)
    assert __import__("re").search(message, str(error)), str(error)
    assert not os.path.exists(out / "model_final.pth")


def test_pickle_of_weights_loads_but_its_code_does_not_run(tmp_path):
    """A .pkl that only holds numpy arrays loads; one that names a function is refused (see test_weights)."""
    import numpy as np

    path = str(tmp_path / "weights.pkl")
    with open(path, "wb") as f:
        pickle.dump({"model": {"weight": np.zeros((2, 2), np.float32)}, "__author__": "test"}, f)
    model = torch.nn.Linear(2, 2, bias=False)
    SafeDetectionCheckpointer(model).load(path)
    assert torch.equal(model.weight, torch.zeros(2, 2))
