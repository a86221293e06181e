"""What a run may do with its output dir: every decision here is taken before anything is written into it.

* a new training run needs an output dir that holds no earlier run (checkpoints, metrics.json, log.txt, TensorBoard
  events, config.yaml, inference/): starting over would overwrite or mix them;
* `--resume` continues the run whose checkpoints are there; in an empty dir it starts a new run and says so;
* files of an earlier run that stopped before its first checkpoint are refused with and without `--resume`, by
  one message (nothing to resume; a new run would mix with them);
* `--eval-only` writes into a folder of its own, `inference/eval_<N>/` (N = 1, 2, ...), beside the training run's
  files, and only appends to `metrics.json`; the folder is taken by an exclusive mkdir, so two evaluations at once
  never share one;
* one training run at a time per output dir: the run holds a lock on the folder itself (`lock_output_dir`, flock:
  the kernel releases it when the process ends, so a killed run leaves nothing stuck and no lock file behind);
* the output dir must be a folder this user can write (checked before anything is written: `check_writable`);
* temporary files that a killed save left (`.model_0000099.pth.<random>.tmp`) are removed when the next run starts
  there, and logged (`remove_stale_temporary_files`).
"""

import fcntl
import glob
import os
import re
from typing import Dict, List

from ..checkpoint import run_checkpoints
from ..errors import Error
from ..outputs import check_writable, next_free_path

__all__ = [
    "OutputDirError",
    "check_training_dir",
    "check_writable",
    "earlier_run_files",
    "lock_output_dir",
    "make_eval_dir",
    "next_eval_dir",
    "release_output_dir",
    "remove_stale_temporary_files",
]

# What `cascade_det.weights.atomic_write` names its temporary files: ".<target name>.<random>.tmp"
_TEMPORARY = re.compile(
    r"^\.(model_(\d+|final)\.pth|last_checkpoint|metrics\.json|config(_resume_\d+)?\.yaml)\.[^.]+\.tmp$"
)
_locks: Dict[str, int] = {}  # output dir (real path) -> the open descriptor whose flock this process holds

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


def make_eval_dir(output_dir: str) -> str:
    """Create and return `output_dir/inference/eval_<N>` for the first N >= 1 not taken, by an exclusive mkdir (two
    evaluations started at once get two folders)."""
    os.makedirs(os.path.join(output_dir, "inference"), exist_ok=True)
    while True:
        folder = next_eval_dir(output_dir)
        try:
            os.mkdir(folder)
            return folder
        except FileExistsError:
            continue


def lock_output_dir(folder: str) -> None:
    """Hold an exclusive lock on the output dir `folder` for the rest of this process; another process holding it
    is an OutputDirError. Taking it again in the same process (a resumed run in a test) is a no-op."""
    real = os.path.realpath(folder)
    if real in _locks:
        return
    fd = os.open(real, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputDirError(
            f"{folder} is in use by another training run (it holds the folder's lock): two runs would interleave "
            "their checkpoints and metrics.json. Wait for it to finish, or set another output dir."
        ) from None
    _locks[real] = fd


def release_output_dir(folder: str) -> None:
    """Give up this process's lock on `folder` (a no-op when it holds none)."""
    fd = _locks.pop(os.path.realpath(folder), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock


def remove_stale_temporary_files(folder: str) -> List[str]:
    """Remove the temporary files an interrupted atomic write left in `folder`; returns "name (size)" of each."""
    removed = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        if _TEMPORARY.match(name) and os.path.isfile(path):
            size = os.path.getsize(path)
            os.remove(path)
            removed.append(f"{name} ({size / 2**20:.1f} MiB)")
    return removed
