"""What a run may do with its output dir: every decision here is taken before anything is written into it.

* a new training run needs an output dir that holds no earlier run (checkpoints, metrics.json, log.txt, TensorBoard
  events, config.yaml, inference/): starting over would overwrite or mix them;
* `--resume` continues the run whose checkpoints are there; in an empty dir it starts a new run and says so;
* files of an earlier run that stopped before its first checkpoint are refused with and without `--resume`, by
  one message (nothing to resume; a new run would mix with them);
* `--eval-only` writes into a folder of its own, `inference/eval_<N>/` (N = 1, 2, ...), beside the training run's
  files, and only appends to `metrics.json`.
"""

import glob
import os
from typing import List

from ..checkpoint import run_checkpoints
from ..errors import Error
from ..outputs import next_free_path

__all__ = ["OutputDirError", "check_training_dir", "earlier_run_files", "next_eval_dir"]

_RUN_FILES = (
    "last_checkpoint",
    "model_*.pth",
    "metrics.json",
    "log.txt*",
    "events.out.tfevents.*",
    "config.yaml",
    "inference",
)


class OutputDirError(Error, FileExistsError):
    """The output dir holds files a run would overwrite or mix with its own."""


def earlier_run_files(output_dir: str) -> List[str]:
    """The files and folders of an earlier run in `output_dir` (names, sorted)."""
    found = {os.path.basename(p) for pattern in _RUN_FILES for p in glob.glob(os.path.join(output_dir, pattern))}
    return sorted(found)


def check_training_dir(output_dir: str, resume: bool, key: str) -> bool:
    """Whether this training run resumes (True) or starts new (False) in `output_dir`; raises OutputDirError when
    neither is safe. `key` is the config key of the output dir, for the message. (Writes nothing, logs nothing: the
    run's log is not set up yet.)"""
    files = earlier_run_files(output_dir)
    checkpoints = [os.path.basename(p) for p in run_checkpoints(output_dir)]
    checkpoints = checkpoints or (["last_checkpoint"] if "last_checkpoint" in files else [])
    ordered = checkpoints + [f for f in files if f not in checkpoints]  # the checkpoints first, newest first
    listing = ", ".join(ordered[:8]) + (", ..." if len(ordered) > 8 else "")
    if resume and checkpoints:
        return True
    if files and not checkpoints:
        # The same answer with and without --resume: there is nothing to continue, and a new run would mix with them.
        raise OutputDirError(
            f"{output_dir} holds files of an earlier run that stopped before its first checkpoint ({listing}): "
            f"nothing to resume, and a new run would mix with them. Remove them, or set another output dir ({key}=...)."
        )
    if files:
        raise OutputDirError(
            f"{output_dir} already holds a training run: {listing}. A new run would overwrite or mix with it. Pass "
            f"--resume to continue it, or set another output dir ({key}=...)."
        )
    return False  # a new run (with --resume: nothing to resume; setup says so in the run's log)


def next_eval_dir(output_dir: str) -> str:
    """`output_dir/inference/eval_<N>` for the first N >= 1 not taken (not created here)."""
    return next_free_path(os.path.join(output_dir, "inference"), "eval_{}")
