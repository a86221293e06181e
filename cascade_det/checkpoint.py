"""`SafeDetectionCheckpointer`: Detectron2's checkpointer, reading files safely and writing them atomically.

Reading: through `cascade_det.weights.load_weights_file` (no pickled code runs unless allowed) and
`cascade_det.convert.convert_known_layouts` (MMDetection and torchvision files are converted); a file whose weights
are not all finite is refused. Every load is reported: how many of the model's tensors the file held and loaded,
which it lacked, which had another shape (`last_load_report`).

The model's description (`model_metadata`: class names, number of classes, input format, test-time resize) is
written into every checkpoint (`MODEL_METADATA_KEY`), so that a checkpoint alone says what it detects.

Writing: each checkpoint goes to a temporary file that is flushed and renamed (`atomic_write`), then
`last_checkpoint` likewise, so a kill never leaves a partial file under a checkpoint's name; weights that are not all
finite are never written. `--resume` takes the newest intact checkpoint: a truncated or unreadable latest one (or
pointer) is skipped with a warning naming it.
"""

import errno
import logging
import os
import re
import shutil
from typing import Callable, Dict, List, Optional, Tuple

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

from .convert import convert_known_layouts
from .errors import Error
from .weights import (
    MODEL_METADATA_KEY,
    UnsafeCheckpointError,
    WeightsFileError,
    atomic_write,
    check_state_dict,
    check_weights_file,
    load_weights_file,
)

__all__ = [
    "CheckpointWriteError",
    "NonFiniteWeightsError",
    "RUN_STATE_KEY",
    "SafeDetectionCheckpointer",
    "UnsafeCheckpointError",
    "run_checkpoints",
]

# The checkpoint entry with the settings of the training run that wrote it (what --resume compares against).
RUN_STATE_KEY = "cascade_det_run"

logger = logging.getLogger(__name__)

_CHECKPOINT_NAME = re.compile(r"^model_(\d+|final)\.pth$")


class CheckpointWriteError(Error, OSError):
    """A checkpoint could not be written (disk full, folder not writable); the earlier ones are intact."""


def _write_failure(path: str, error: BaseException) -> str:
    """One line saying why `path` could not be written and what to do."""
    folder = os.path.dirname(path) or "."
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    full = getattr(error, "errno", None) == errno.ENOSPC or (free is not None and free < 2**26)
    reason = (
        f"the disk is full ({free / 2**20:.0f} MiB free in {folder})"
        if full and free is not None
        else f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    )
    return (
        f"Could not write the checkpoint {path}: {reason}. Nothing was replaced: the earlier checkpoints are intact. "
        "Free space (or choose another output dir), then continue with --resume."
    )


class NonFiniteWeightsError(Error, ValueError):
    """Weights that contain NaN or infinity: never written, never loaded."""


def non_finite_tensors(weights: Dict) -> List[str]:
    """Names of the floating-point tensors of `weights` that hold a NaN or an infinity."""
    return [
        k
        for k, v in weights.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def run_checkpoints(folder: str) -> List[str]:
    """The checkpoints a training run wrote into `folder` (model_NNNNNNN.pth, model_final.pth), newest first."""
    if not os.path.isdir(folder):
        return []
    found = [(m.group(1), name) for name in os.listdir(folder) if (m := _CHECKPOINT_NAME.match(name))]
    found.sort(key=lambda item: float("inf") if item[0] == "final" else int(item[0]), reverse=True)
    return [os.path.join(folder, name) for _, name in found]


class _AtomicWrites:
    """A path manager (iopath's interface, as fvcore's checkpointer uses it) whose files opened for writing are
    written atomically (`atomic_write`: a temporary file, flushed, then renamed); everything else is `inner`'s."""

    def __init__(self, inner):
        self.inner = inner

    def open(self, path: str, mode: str = "r", **kwargs):
        if "w" not in mode:
            return self.inner.open(path, mode, **kwargs)
        return atomic_write(path, text="b" not in mode)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """`DetectionCheckpointer` whose loading runs no pickled code unless `allow_unsafe_pickle` is set, whose saving
    is atomic and refuses non-finite weights, and whose resuming falls back to the newest intact checkpoint."""

    def __init__(self, model, save_dir="", *, allow_unsafe_pickle: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.path_manager = _AtomicWrites(self.path_manager)
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.last_load_report: Dict[str, list] = {}
        self.loaded_from = ""  # the file the last load read
        self.resumed_from = ""  # the checkpoint resume_or_load(resume=True) resumed from ("" if none)
        self.model_metadata: Optional[Dict] = None  # written into every checkpoint under MODEL_METADATA_KEY
        self.run_state: Optional[Dict] = None  # written into every checkpoint under RUN_STATE_KEY
        self._read_ahead = None  # (path, file contents) that `read` returned, for the next load of that path

    # ---- reading ----
    def load(self, path: str, *args, **kwargs):
        if path:
            check_weights_file(path)  # fvcore would only assert
        return super().load(path, *args, **kwargs)

    def read(self, path: str) -> Dict:
        """The file's contents as read safely (`load_weights_file`), before any conversion to the model: e.g. for
        its `model_metadata_of` before the model is built. The next `load(path)` uses them instead of reading
        the file again."""
        check_weights_file(path)
        contents = load_weights_file(path, allow_unsafe_pickle=self.allow_unsafe_pickle)
        self._read_ahead = (path, contents)
        return contents

    def _load_file(self, filename: str):
        self.loaded_from = filename
        read_ahead, self._read_ahead = self._read_ahead, None
        if read_ahead is not None and read_ahead[0] == filename:
            contents = dict(read_ahead[1])
        else:
            contents = load_weights_file(filename, allow_unsafe_pickle=self.allow_unsafe_pickle)
        checkpoint = convert_known_layouts(contents, self.model)
        check_state_dict(checkpoint["model"], filename)
        bad = non_finite_tensors({k: torch.as_tensor(v) for k, v in checkpoint["model"].items()})
        if bad:
            raise NonFiniteWeightsError(
                f"{filename} holds weights that are not finite (NaN or infinity) in {len(bad)} tensors, e.g. "
                f"{', '.join(bad[:3])}: training had diverged when it was written. Use an earlier checkpoint."
            )
        return checkpoint

    def _load_model(self, checkpoint):
        """Load as Detectron2 does, then report what the file held and what was loaded (logged, and kept in
        `last_load_report`: matched / missing / unexpected / incorrect_shapes, over the model's state-dict tensors
        without BN step counters)."""
        weights = checkpoint["model"]
        if checkpoint.get("matching_heuristics", False):  # Caffe2 / pycls names: Detectron2's name matching
            self._convert_ndarray_to_tensor(weights)
            weights = checkpoint["model"] = align_and_update_state_dicts(
                self.model.state_dict(), weights, c2_conversion=checkpoint.get("__author__") == "Caffe2"
            )
            checkpoint["matching_heuristics"] = False
        present = {k[len("module.") :] if all(n.startswith("module.") for n in weights) else k for k in weights}
        incompatible = super()._load_model(checkpoint)
        shapes = {
            k: (tuple(file_shape), tuple(model_shape)) for k, file_shape, model_shape in incompatible.incorrect_shapes
        }
        model_keys = [k for k in self.model.state_dict() if not k.endswith("num_batches_tracked")]
        self.last_load_report = {
            "matched": [k for k in model_keys if k in present and k not in shapes],
            "missing": [k for k in model_keys if k not in present],
            "unexpected": [k for k in incompatible.unexpected_keys if not k.endswith("num_batches_tracked")],
            "incorrect_shapes": [(k, *shapes[k]) for k in model_keys if k in shapes],
        }
        report = self.last_load_report
        logger.info(
            "Checkpoint loaded %d of the model's %d tensors (%d not in the file, %d with another shape in the file; "
            "%d tensors of the file unused)",
            len(report["matched"]),
            len(model_keys),
            len(report["missing"]),
            len(report["incorrect_shapes"]),
            len(report["unexpected"]),
        )
        return incompatible

    # ---- writing ----
    def save(self, name: str, **kwargs) -> None:
        """fvcore's `save` (`<save_dir>/<name>.pth`, then `last_checkpoint` pointing at it), both written atomically
        through `self.path_manager` (`_AtomicWrites`). Non-finite weights are refused (NonFiniteWeightsError): a
        diverged model never replaces a good checkpoint."""
        bad = non_finite_tensors(self.model.state_dict()) if self.save_dir and self.save_to_disk else []
        if bad:
            raise NonFiniteWeightsError(
                f"Not writing {name}.pth: {len(bad)} weight tensors are not finite (e.g. {', '.join(bad[:3])})"
            )
        if self.model_metadata:
            kwargs.setdefault(MODEL_METADATA_KEY, self.model_metadata)
        if self.run_state:
            kwargs.setdefault(RUN_STATE_KEY, self.run_state)
        try:
            super().save(name, **kwargs)
        except (OSError, RuntimeError) as e:
            if isinstance(e, RuntimeError) and "write" not in str(e).lower():
                raise  # not a failed write
            raise CheckpointWriteError(_write_failure(os.path.join(self.save_dir, f"{name}.pth"), e)) from e

    def link_checkpoint(self, source: str, name: str) -> bool:
        """Make `<save_dir>/<name>.pth` a hard link to the checkpoint `<save_dir>/<source>.pth` (atomically: a link
        beside it, renamed) and point last_checkpoint at it; False where the file system cannot link."""
        if not (self.save_dir and self.save_to_disk):
            return True
        source_path = os.path.join(self.save_dir, f"{source}.pth")
        target = os.path.join(self.save_dir, f"{name}.pth")
        staging = os.path.join(self.save_dir, f".{name}.pth.link.tmp")
        try:
            if os.path.lexists(staging):
                os.remove(staging)
            os.link(source_path, staging)
            os.replace(staging, target)
        except OSError as e:
            logger.info("Cannot hard-link %s to %s (%s): writing it", target, source_path, e)
            return False
        self.tag_last_checkpoint(f"{name}.pth")
        logger.info("Saved %s (a hard link to %s: the same checkpoint)", target, source_path)
        return True

    # ---- resuming ----
    def resume_candidates(self) -> List[str]:
        """Checkpoints to resume from, best first: the one `last_checkpoint` names, then the run's others, newest
        first."""
        pointed = self.get_checkpoint_file() if self.has_checkpoint() else ""
        pointed = pointed if pointed and os.path.isfile(pointed) else ""
        if self.has_checkpoint() and not pointed:
            logger.warning(
                "%s is empty or names a missing file; looking for the newest checkpoint instead",
                os.path.join(self.save_dir, "last_checkpoint"),
            )
        others = [p for p in run_checkpoints(self.save_dir) if os.path.abspath(p) != os.path.abspath(pointed or "-")]
        return ([pointed] if pointed else []) + others

    def first_usable(self, read: Callable[[str], Dict]) -> Tuple[str, Optional[Dict], List[str]]:
        """(the first resume candidate that `read` accepts, what it returned, a message per candidate skipped before
        it): `read` is `load` to resume, `_load_file` to look without loading. ("", None, []) when the folder holds no
        checkpoint; WeightsFileError when it holds some and none can be used."""
        skipped = []
        candidates = self.resume_candidates()
        for candidate in candidates:
            try:
                return candidate, read(candidate), skipped
            except (WeightsFileError, NonFiniteWeightsError, UnsafeCheckpointError) as e:
                skipped.append(f"Not resuming from {candidate}: {e}")
        if candidates:
            raise WeightsFileError(
                f"--resume: none of the {len(candidates)} checkpoints in {self.save_dir} can be used "
                f"({'; '.join(skipped)}); restore an intact copy, or start a new run in another output dir"
            )
        return "", None, skipped

    def resume_or_load(self, path: str, *, resume: bool = True):
        """With `resume`, resume from the newest intact checkpoint of `save_dir` (`resumed_from` names it); when the
        folder holds none, or without `resume`, load the model weights of `path` ("" loads nothing). Returns the
        checkpoint's extra data. Raises WeightsFileError when checkpoints exist but none can be read."""
        self.resumed_from = ""
        if resume:
            candidate, checkpoint, skipped = self.first_usable(self.load)
            for message in skipped:
                logger.warning(message)
            if candidate:
                self.resumed_from = candidate
                return checkpoint
        return self.load(path, checkpointables=[])
