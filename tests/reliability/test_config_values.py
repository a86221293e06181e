"""A config value of the wrong type or range is an error naming the key and what it expects, before anything runs;
a diverging run stops before its diverged step is applied and saved."""

import os

import pytest
import torch

from cascade_det.engine import ConfigValueError
from cascade_det.engine.divergence import TrainingDivergedError

from .conftest import LAZY, TINY, assert_untouched, run_main, snapshot

YACS = "configs/Shapes/cascade_rcnn_R_18_FPN.yaml"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.max_iter=abc", "train.max_iter='abc': expected a positive integer"),
        ("train.max_iter=0", "train.max_iter=0: expected a positive integer"),
        ("train.checkpointer.period=-5", "train.checkpointer.period=-5: expected a positive integer"),
        ("train.eval_period=1.5", "train.eval_period=1.5: expected an integer >= 0"),
        ("train.amp.enabled=maybe", "train.amp.enabled='maybe': expected true or false"),
        ("train.loss_explosion_factor=-1", "train.loss_explosion_factor=-1: expected a number >= 0"),
        ("dataloader.train.total_batch_size=0", "dataloader.train.total_batch_size=0: expected a positive multiple"),
        ("dataloader.train.num_workers=two", "dataloader.train.num_workers='two': expected an integer >= 0"),
        ("optimizer.lr=0", "optimizer.lr=0: expected a positive number"),
    ],
)
def test_a_wrong_config_value_names_the_key_and_the_expected_type(run_copy, override, message):
    before = snapshot(run_copy)
    error = run_main("--resume", "--config-file", LAZY, f"train.output_dir={run_copy}", *TINY, override)
    assert isinstance(error, (ConfigValueError, ValueError)) and message in str(error), repr(error)
    assert_untouched(run_copy, before)


def test_a_wrong_yacs_value_names_its_key(tmp_path):
    error = run_main("--config-file", YACS, "OUTPUT_DIR", str(tmp_path / "out"), "SOLVER.MAX_ITER", "-3")
    assert isinstance(error, ConfigValueError) and "SOLVER.MAX_ITER=-3: expected a positive integer" in str(error)
    assert not (tmp_path / "out").exists()


def test_flags_after_the_overrides_are_named(tmp_path):
    error = run_main("--config-file", LAZY, f"train.output_dir={tmp_path}", "train.max_iter=3", "--resume")
    assert isinstance(error, ValueError)
    assert "'--resume' came after the config overrides" in str(error) and "before the first key=value" in str(error)


def test_divergence_stops_training_before_the_diverged_step_and_names_iteration_losses_lr(tmp_path):
    out = str(tmp_path / "diverging")
    error = run_main(
        "--config-file",
        LAZY,
        f"train.output_dir={out}",
        "train.max_iter=20",
        *TINY,
        "train.checkpointer.period=1",
        "optimizer.lr=1e5",
    )
    assert isinstance(error, TrainingDivergedError)
    message = str(error)
    assert message.startswith("Training diverged at iteration ")
    assert "loss_cls_stage0=" in message and "loss_rpn_cls=" in message and "lr=" in message
    assert "This step was not applied, and no checkpoint of its weights was written" in message
    assert "start a new run" in message
    iteration = int(message.split("iteration ")[1].split(":")[0])
    assert 1 <= iteration < 20
    # Every checkpoint written has finite weights; none after the divergence was detected.
    names = sorted(n for n in os.listdir(out) if n.startswith("model_"))
    assert names and all(int(n[6:13]) < iteration for n in names)
    for name in names:
        weights = torch.load(os.path.join(out, name), weights_only=False)["model"]
        assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point()), name


def test_explosion_factor_zero_turns_the_explosion_test_off_but_not_the_non_finite_one():
    from cascade_det.engine.divergence import _LossGuard

    guard = _LossGuard()
    guard.model = torch.nn.Linear(1, 1)  # the guard watches the trained model's outputs
    guard.setup_guard(0, lambda i: "")
    guard.loss_history.extend([1.0, 1.0])
    assert guard._divergence(1e9) is None
    assert guard._divergence(float("nan")) == "the loss is not finite"
    guard.setup_guard(1e4, lambda i: "")
    guard.loss_history.extend([2.0, 4.0, 3.0])
    assert guard._divergence(
        3e4
    ) is None and "exploded: 3.1e+04 > 10000 x the median of the last 3" in guard._divergence(3.1e4)
