"""`--resume` is honest: what may change is applied and logged (the lr included), what may not is refused with the
reason before anything is written, replayed iterations are not written twice into metrics.json, stale temporary
files are removed, pruning counts every checkpoint of the run, model_final.pth is no second copy, a crashed last
iteration is not evaluated, and one training run at a time writes into an output dir."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cascade_det.checkpoint import CheckpointWriteError
from cascade_det.engine.resume_checks import ResumeError
from cascade_det.engine.run_dir import OutputDirError, make_eval_dir
from cascade_det.errors import OutputPathError

from ..conftest import ROOT
from .conftest import LAZY, TINY, assert_untouched, clone_run, log_of, private, run_main, snapshot


def resume(folder, *extra):
    return run_main("--resume", "--config-file", LAZY, f"train.output_dir={folder}", *TINY, *extra)


def records(folder, name="metrics.json"):
    with open(os.path.join(folder, name)) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.max_iter=4", "is complete: {run}/model_final.pth is at iteration 3, and max_iter is 4"),
        ("train.max_iter=2", "is complete: {run}/model_final.pth is at iteration 3, and max_iter is 2"),
        ("dataloader.train.total_batch_size=4", "was trained at total batch size 2, this config has 4"),
        ("model.backbone.bottom_up.stages.depth=34", "was written by another model"),
        ("optimizer._target_=torch.optim.Adam", "was trained with another optimizer (AdamW; this config: Adam)"),
    ],
    ids=["complete", "max_iter below the checkpoint", "batch size", "architecture", "optimizer"],
)
def test_resume_that_cannot_continue_the_run_is_refused_with_the_reason_and_touches_nothing(
    run_copy, override, message
):
    before = snapshot(run_copy)
    extra = [] if override.startswith("train.max_iter") else ["train.max_iter=6"]
    error = resume(run_copy, *extra, override)
    assert isinstance(error, ResumeError), error
    assert message.format(run=run_copy) in str(error)
    assert_untouched(run_copy, before)
    assert sorted(os.listdir(run_copy)) == sorted({p.split(os.sep)[0] for p in before})


def test_resume_from_a_weights_file_without_trainer_state_is_refused(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({"model": {"w": torch.zeros(1)}}, folder / "model_0000009.pth")
    error = resume(folder, "train.max_iter=20")
    assert isinstance(error, ResumeError) and "holds no trainer state" in str(error)
    assert "train.init_checkpoint=" in str(error) and os.listdir(folder) == ["model_0000009.pth"]


def test_a_new_lr_on_resume_is_applied_and_logged(run_copy, tmp_path):
    other = clone_run(run_copy, str(tmp_path / "same_lr"))  # a second copy, resumed with the run's own lr
    assert resume(other, "train.max_iter=6") is None
    assert resume(run_copy, "train.max_iter=6", "optimizer.lr=0.0005") is None
    assert "--resume: base lr 0.001 -> 0.0005 (from this config), applied from this iteration" in log_of(run_copy)
    assert "--resume: lr changed since" in log_of(run_copy)
    same = {r["iteration"]: r["lr"] for r in records(other) if "lr" in r}
    new = {r["iteration"]: r["lr"] for r in records(run_copy) if "lr" in r}
    for iteration in (4, 5):  # the schedule's position is kept; only the base lr is this config's
        assert new[iteration] == pytest.approx(same[iteration] * 0.5, rel=1e-6)


def test_replayed_iterations_are_written_once_and_the_earlier_records_set_aside(run_copy):
    for name in ("model_final.pth", "model_0000003.pth"):  # interrupted after the checkpoint of iteration 1
        os.remove(os.path.join(run_copy, name))
    with open(private(os.path.join(run_copy, "last_checkpoint")), "w") as f:
        f.write("model_0000001.pth")
    before = records(run_copy)
    assert resume(run_copy, "train.max_iter=4") is None
    training = [r["iteration"] for r in records(run_copy) if "total_loss" in r]
    assert training == sorted(set(training)) == [0, 1, 2, 3]  # each iteration once
    aside = records(run_copy, "metrics.replayed_1.json")
    assert aside == [r for r in before if r["iteration"] > 2 or (r["iteration"] == 2 and "total_loss" in r)]
    assert "moved to" in log_of(run_copy) and "metrics.replayed_1.json" in log_of(run_copy)


def test_stale_temporary_files_are_removed_and_logged_and_pruning_counts_every_checkpoint(run_copy):
    stale = os.path.join(run_copy, ".model_0000005.pth.k2j4h5.tmp")
    with open(stale, "wb") as f:
        f.write(b"\0" * 4096)
    assert (
        resume(run_copy, "train.max_iter=8", "train.checkpointer.period=2", "train.checkpointer.max_to_keep=2") is None
    )
    assert not os.path.exists(stale)
    assert "Removed temporary files an interrupted save left" in log_of(run_copy) and ".model_0000005.pth" in log_of(
        run_copy
    )
    checkpoints = sorted(n for n in os.listdir(run_copy) if n.startswith("model_"))
    assert checkpoints == ["model_0000005.pth", "model_0000007.pth", "model_final.pth"]  # 1 and 3 pruned too


def test_model_final_is_a_hard_link_to_the_last_periodic_checkpoint(finished_run):
    final, last = (os.path.join(finished_run, n) for n in ("model_final.pth", "model_0000003.pth"))
    assert os.path.samefile(final, last)
    with open(os.path.join(finished_run, "last_checkpoint")) as f:
        assert f.read().strip() == "model_final.pth"


def test_a_crash_at_the_last_iteration_is_not_evaluated():
    from cascade_det.engine.trainer import _EvalHook

    evaluated = []
    hook = _EvalHook(0, lambda: evaluated.append(1) or {}, final_eval=True)
    hook.trainer = type("Trainer", (), {"iter": 3, "max_iter": 4})()  # the loop stopped in its last iteration
    hook.after_train()
    assert evaluated == []
    hook = _EvalHook(0, lambda: evaluated.append(1) or {}, final_eval=True)
    hook.trainer = type("Trainer", (), {"iter": 4, "max_iter": 4, "storage": None})()
    with contextlib.suppress(AttributeError):  # (writing its results needs a real trainer's storage)
        hook.after_train()
    assert evaluated == [1]


def test_one_training_run_at_a_time_per_output_dir_and_a_killed_one_leaves_no_lock(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from cascade_det.engine.run_dir import lock_output_dir as l; l({str(folder)!r}); "
            "print('locked', flush=True); import time; time.sleep(120)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        error = run_main("--config-file", LAZY, f"train.output_dir={folder}", "train.max_iter=1", *TINY)
        assert isinstance(error, OutputDirError) and "is in use by another training run" in str(error)
        assert os.listdir(folder) == []
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    time.sleep(0.1)
    assert run_main("--config-file", LAZY, f"train.output_dir={folder}", "train.max_iter=1", *TINY) is None


def test_two_evaluations_at_once_get_folders_of_their_own(tmp_path):
    assert [os.path.basename(make_eval_dir(str(tmp_path))) for _ in range(2)] == ["eval_1", "eval_2"]


def test_a_checkpoint_that_cannot_be_written_names_the_file_and_keeps_the_earlier_ones(tmp_path, monkeypatch):
    import fvcore.common.checkpoint as fvcore_checkpoint

    saves = []
    real_save = torch.save

    def save_then_fill_the_disk(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 2:
            raise RuntimeError(
                "[enforce fail at inline_container.cc:626] . unexpected pos 3584 vs 3472: file write failed"
            )
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(fvcore_checkpoint.torch, "save", save_then_fill_the_disk)
    out = tmp_path / "run"
    error = run_main(
        "--config-file", LAZY, f"train.output_dir={out}", "train.max_iter=4", "train.checkpointer.period=2", *TINY
    )
    assert isinstance(error, CheckpointWriteError), error
    assert f"Could not write the checkpoint {out}/model_0000003.pth" in str(error) and "--resume" in str(error)
    assert (out / "model_0000001.pth").is_file() and not any(n.endswith(".tmp") for n in os.listdir(out))


@pytest.mark.parametrize("kind", ["a file", "read-only"])
def test_an_output_dir_that_cannot_hold_the_run_is_refused_before_anything_is_written(tmp_path, monkeypatch, kind):
    target = tmp_path / "out"
    if kind == "a file":
        target.write_text("not a folder")
    else:
        import errno
        import tempfile

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    error = run_main("--config-file", LAZY, f"train.output_dir={target}", "train.max_iter=1", *TINY)
    assert isinstance(error, OutputPathError) and str(target) in str(error)
    assert ("is a file" if kind == "a file" else "Read-only file system") in str(error)
    assert target.is_file() if kind == "a file" else not target.exists()
