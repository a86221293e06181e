"""What `--resume` may and may not change, decided before anything is written.

Every checkpoint a training run writes carries `RUN_STATE_KEY`: the settings it was trained with (`run_state`).
On `--resume` the newest usable checkpoint of the output dir is read (safely, as the trainer will read it) and:
  * refused when it cannot continue this run: it holds no trainer state (a weights file copied in), it was written
    by another model (tensors missing or of another shape: another architecture or number of classes), another
    optimizer or other parameter groups, or another total batch size (the data order would not continue); or when
    the run is already complete (its iteration reaches max_iter);
  * otherwise every value that changed since (lr, max_iter, checkpoint and evaluation periods, workers) is listed
    in the run's notes; the trainer applies them (the new lr included: `apply_resumed_lr`).
"""

import dataclasses
import logging
from typing import Dict, List, Optional, Tuple

import torch

from ..checkpoint import RUN_STATE_KEY, SafeDetectionCheckpointer
from ..errors import Error
from .run import Run

__all__ = ["RUN_STATE_KEY", "ResumeError", "ResumePoint", "apply_resumed_lr", "check_resume", "run_state"]

logger = logging.getLogger("cascade_det")

# Settings a resumed run may change (applied and logged): setting name -> what it is called in the notes.
_MAY_CHANGE = {
    "base_lr": "lr",
    "max_iter": "max_iter",
    "checkpoint_period": "checkpoint period",
    "eval_period": "eval period",
    "num_workers": "workers",
}


class ResumeError(Error, ValueError):
    """`--resume` cannot continue the run of the output dir with this config; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """The checkpoint `--resume` continues from, its iteration, and what changed since it was written."""

    path: str
    iteration: int
    notes: Tuple[str, ...] = ()


def run_state(run: Run, optimizer: Optional[torch.optim.Optimizer] = None) -> Dict:
    """The settings a checkpoint records about the run that wrote it (plain values)."""
    s = run.settings
    state = {name: getattr(s, name) for name in _MAY_CHANGE}
    state.update(total_batch_size=s.total_batch_size, num_classes=s.num_classes)
    if optimizer is not None:
        state["optimizer"] = type(optimizer).__name__
    return state


def _architecture_gaps(model: torch.nn.Module, weights: Dict) -> List[str]:
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = {k: tuple(torch.as_tensor(v).shape) for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in own if k not in theirs]
    shapes = [f"{k} {theirs[k]} vs {own[k]}" for k in own if k in theirs and theirs[k] != own[k]]
    unexpected = [k for k in theirs if k not in own]
    return missing + shapes + unexpected


def _optimizer_state(checkpoint: Dict) -> Optional[Dict]:
    """The optimizer state a training checkpoint holds: the trainer's (`trainer._trainer.optimizer`, as
    DefaultTrainer saves it), or a top-level `optimizer` entry; None for a weights file."""
    trainer = checkpoint.get("trainer")
    inner = trainer.get("_trainer") if isinstance(trainer, dict) else None
    state = inner.get("optimizer") if isinstance(inner, dict) else checkpoint.get("optimizer")
    return state if isinstance(state, dict) else None


def check_resume(run: Run) -> Optional[ResumePoint]:
    """The checkpoint `--resume` will continue from (None when the output dir holds none), checked against `run`;
    raises ResumeError when it cannot continue this run."""
    s = run.settings
    cpu_run = run.replace(device="cpu") if s.device != "cpu" else run
    model = cpu_run.style.build_model(cpu_run.cfg, "cpu", stage_detections=False)
    checkpointer = SafeDetectionCheckpointer(model, s.output_dir, allow_unsafe_pickle=s.allow_unsafe_pickle)
    path, checkpoint, notes = checkpointer.first_usable(checkpointer._load_file)
    if not path:
        return None
    fresh_start = (
        f"start a new run in another output dir with {run.key('weights')}={path} (fine-tuning from its weights)"
    )
    optimizer_state = _optimizer_state(checkpoint)
    if "iteration" not in checkpoint or optimizer_state is None:
        raise ResumeError(
            f"--resume: {path} holds no trainer state (no iteration or optimizer): it is a weights file, not a "
            f"checkpoint this run wrote, so it cannot be continued. To train from its weights, {fresh_start}."
        )
    iteration = int(checkpoint["iteration"])
    gaps = _architecture_gaps(model, checkpoint["model"])
    if gaps:
        raise ResumeError(
            f"--resume: {path} was written by another model ({len(gaps)} tensors missing, unexpected or of another "
            f"shape, e.g. {', '.join(gaps[:3])}): another architecture or number of classes "
            f"({run.key('num_classes')}) cannot continue this run. Resume with the config it was trained with, "
            f"or {fresh_start}."
        )
    stored = checkpoint.get(RUN_STATE_KEY) or {}
    optimizer = run.build_optimizer(model)
    groups = optimizer_state.get("param_groups", [])
    changed_optimizer = stored.get("optimizer") not in (None, type(optimizer).__name__)
    if changed_optimizer or len(groups) != len(optimizer.param_groups):
        was = stored.get("optimizer") or f"{len(groups)} parameter groups"
        now = type(optimizer).__name__ if changed_optimizer else f"{len(optimizer.param_groups)}"
        raise ResumeError(
            f"--resume: {path} was trained with another optimizer ({was}; this config: {now}): its optimizer state "
            f"cannot continue this run. Resume with the optimizer it was trained with, or {fresh_start}."
        )
    if "total_batch_size" in stored and stored["total_batch_size"] != s.total_batch_size:
        raise ResumeError(
            f"--resume: {path} was trained at total batch size {stored['total_batch_size']}, this config has "
            f"{s.total_batch_size} ({run.key('total_batch_size')}): the data order would not continue, so the "
            f"resumed run would not be the run. Resume with {run.key('total_batch_size')}="
            f"{stored['total_batch_size']}, or {fresh_start}."
        )
    if iteration + 1 >= s.max_iter:
        raise ResumeError(
            f"--resume: the run in {s.output_dir} is complete: {path} is at iteration {iteration}, and max_iter is "
            f"{s.max_iter} ({run.key('max_iter')}). Raise {run.key('max_iter')} to train on, or evaluate it with "
            "--eval-only --resume."
        )
    for name, label in _MAY_CHANGE.items():
        if name in stored and stored[name] != getattr(s, name):
            notes.append(f"--resume: {label} changed since {path}: {stored[name]} -> {getattr(s, name)} (applied)")
    return ResumePoint(path, iteration, tuple(notes))


def apply_resumed_lr(optimizer: torch.optim.Optimizer, scheduler, configured: List[float]) -> Optional[str]:
    """After a resume restored the optimizer and scheduler, give each parameter group its `configured` base lr
    (the lrs of the freshly built optimizer, i.e. this run's config) in place of the checkpoint's, keeping the
    schedule's position; returns a note when they differed."""
    restored = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
    if len(restored) != len(configured) or all(
        abs(a - b) <= 1e-12 * max(abs(b), 1) for a, b in zip(restored, configured)
    ):
        return None
    for group, old, new in zip(optimizer.param_groups, restored, configured):
        group["lr"] = group["lr"] * (new / old) if old else new  # the schedule's factor at this iteration, kept
        group["initial_lr"] = new
    if hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = list(configured)
    return f"--resume: base lr {restored[0]:g} -> {configured[0]:g} (from this config), applied from this iteration"
