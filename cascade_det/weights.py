"""Weight files: read them without running code a pickle may carry, write them so that no reader ever sees a
partial file. Format conversion (torchvision, MMDetection layouts) is `cascade_det.convert`'s job.

A `.pth` or `.pkl` file is a pickle, and unpickling can execute arbitrary code. `load_weights_file` reads:
  .pth          with `torch.load(weights_only=True)`: tensors, containers, numbers, numpy arrays, and inert
                stand-ins for mmengine's logged training state (MMDetection v3 checkpoints);
  .pkl          (Detectron2 model zoo, Detectron/Caffe2, converted ImageNet backbones) with an unpickler that only
                builds numpy arrays and plain containers;
  .safetensors  model weights, no pickle at all.
What a model is (its class names, number of classes, input format, test-time resize) travels with its weights under
`MODEL_METADATA_KEY`: an entry of plain values in a `.pth` checkpoint, a JSON string in a `.safetensors` file's
header; `model_metadata_of` reads it back from a loaded checkpoint.
Anything else in a pickle is refused with `UnsafeCheckpointError`, whose message names the file, says "unsafe" and
names the flag that allows it (`train.allow_unsafe_pickle=True` / `MODEL.ALLOW_UNSAFE_PICKLE True`, or the
environment's `CASCADE_DET_ALLOW_UNSAFE_PICKLE=1`, which also reaches Detectron2's own checkpointer), for trusted
files only. After `import cascade_det`, Detectron2's and fvcore's checkpointers read through `load_weights_file` too
(`cascade_det.safe_loading`). A file that is missing, empty, truncated or not a checkpoint is a `WeightsFileError`
(or FileNotFoundError) naming it; a URL is refused: nothing is downloaded.
"""

import contextlib
import io
import json
import logging
import os
import pickle
import re
import tempfile
import zipfile
from typing import Dict, Mapping, Optional

import numpy as np
import torch

from .config import run_options
from .errors import Error, MissingFileError

__all__ = [
    "UnsafeCheckpointError",
    "WeightsFileError",
    "atomic_write",
    "check_state_dict",
    "check_weights_file",
    "load_weights_file",
    "MODEL_METADATA_KEY",
    "model_metadata_of",
    "restricted_pickle_load",
    "save_safetensors",
    "unsafe_pickle_allowed_by_environment",
]

# The checkpoint entry (and .safetensors / ONNX metadata key) under which a model's own description is stored.
MODEL_METADATA_KEY = "cascade_det_model"

logger = logging.getLogger(__name__)

_UNSAFE = run_options()["allow_unsafe_pickle"]
# The environment's opt-in: the one a loader without a config (Detectron2's DefaultPredictor) can read.
UNSAFE_ENV = "CASCADE_DET_ALLOW_UNSAFE_PICKLE"
UNSAFE_FLAG = (
    f"{_UNSAFE.lazy}=True (LazyConfig), {_UNSAFE.yacs} True (yacs) or {UNSAFE_ENV}=1 (environment; also for "
    "Detectron2's own checkpointer)"
)


def unsafe_pickle_allowed_by_environment() -> bool:
    """Whether the environment opts in to arbitrary unpickling (`CASCADE_DET_ALLOW_UNSAFE_PICKLE=1`)."""
    return os.environ.get(UNSAFE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class UnsafeCheckpointError(Error, pickle.UnpicklingError):
    """A checkpoint holds pickled objects beyond weights; loading it could execute code."""


class WeightsFileError(Error, ValueError):
    """A weights file that exists but cannot be used: empty, truncated, or not a checkpoint."""


def check_weights_file(path: str, key: Optional[str] = None) -> None:
    """The one check that a local weights file exists (nothing is ever downloaded). `key` is the config key that
    named it (e.g. "train.init_checkpoint"), for the message."""
    where = f"{key}={path}" if key else path
    if "://" in path:
        raise MissingFileError(
            f"{where} is a URL: cascade_det never downloads anything. Download the file yourself (from a source you "
            "trust), then give its local path."
        )
    if os.path.isfile(path):
        return
    if os.path.isdir(path):
        raise MissingFileError(f"{where} is a folder, not a weights file: give the checkpoint file inside it")
    raise MissingFileError(
        f"{where} does not exist. Weights are read from local files only: put the file on this machine and give "
        "its path: an ImageNet backbone (torchvision's resnet50-0676ba61.pth for the MMDetection-recipe configs, "
        "MSRA's R-50.pkl for Detectron2's), a published Detectron2 or MMDetection checkpoint, or your own."
    )


def load_weights_file(path: str, *, allow_unsafe_pickle: bool = False) -> Dict:
    """Read a checkpoint as Detectron2's checkpointer expects it: a dict with a "model" entry (the weights, or for
    layouts `cascade_det.convert` recognises, the file's own structure) and any other entries the file holds
    ("iteration", "optimizer", "__author__", ...). Raises FileNotFoundError, WeightsFileError or
    UnsafeCheckpointError, each naming `path`."""
    check_weights_file(path)
    allow_unsafe_pickle = allow_unsafe_pickle or unsafe_pickle_allowed_by_environment()
    if os.path.getsize(path) == 0:
        raise WeightsFileError(f"{path} is empty (0 bytes): an interrupted copy or save? Use another checkpoint.")
    if path.endswith(".safetensors"):
        from safetensors import SafetensorError, safe_open
        from safetensors.torch import load_file

        try:
            loaded = {"model": load_file(path), "__author__": "safetensors"}
            with safe_open(path, "pt") as f:
                header = f.metadata() or {}
        except SafetensorError as e:
            raise _unreadable(path, e) from e
        if MODEL_METADATA_KEY in header:
            try:
                loaded[MODEL_METADATA_KEY] = json.loads(header[MODEL_METADATA_KEY])
            except ValueError:
                logger.warning("%s: its %s header entry is not JSON; ignored", path, MODEL_METADATA_KEY)
        return loaded
    if allow_unsafe_pickle:
        logger.warning("Loading %s with arbitrary unpickling (allow_unsafe_pickle is set)", path)
    try:
        if path.endswith(".pkl"):
            return _detectron2_pkl_layout(_read_pkl(path, allow_unsafe_pickle), path)
        loaded = _read_pth(path, allow_unsafe_pickle)
    except (UnsafeCheckpointError, FileNotFoundError):
        raise
    except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, ValueError, OSError) as e:
        reference = _refused_reference(str(e)) if isinstance(e, pickle.UnpicklingError) else None
        if reference and not allow_unsafe_pickle:
            raise _refuse(path, reference) from e  # a reference to code, not a broken file
        raise _unreadable(path, e) from e
    if not isinstance(loaded, Mapping):
        raise WeightsFileError(
            f"{path} holds a {type(loaded).__name__}, not a checkpoint (a dict of tensors, or a dict with a 'model' "
            "entry)"
        )
    return dict(loaded) if "model" in loaded else {"model": loaded}


def check_state_dict(weights, path: str) -> None:
    """A model state dict must map names to tensors or numpy arrays; say which entry is not, naming the file."""
    if not isinstance(weights, Mapping):
        raise WeightsFileError(f"{path}: its 'model' entry is a {type(weights).__name__}, not a dict of tensors")
    for name, value in weights.items():
        if not isinstance(value, (torch.Tensor, np.ndarray)):
            raise WeightsFileError(
                f"{path}: entry {name!r} of its weights is a {type(value).__name__}, not a tensor: not a checkpoint "
                "layout cascade_det knows (Detectron2, cascade_det, MMDetection, torchvision ResNet)"
            )


def model_metadata_of(checkpoint: Mapping, path: str = "") -> Optional[Dict]:
    """The model description a loaded checkpoint carries (a dict: "thing_classes", "num_classes",
    "input_format", "test_resize"), or None when it has none or the entry is malformed (logged)."""
    meta = checkpoint.get(MODEL_METADATA_KEY) if isinstance(checkpoint, Mapping) else None
    if meta is None:
        return None
    classes = meta.get("thing_classes") if isinstance(meta, Mapping) else None
    if (
        not isinstance(meta, Mapping)
        or not isinstance(meta.get("num_classes"), int)
        or not isinstance(classes, (list, tuple))
        or not all(isinstance(c, str) for c in classes)
        or (classes and len(classes) != meta["num_classes"])
    ):
        logger.warning("%s: its %s entry is malformed; ignored", path or "the checkpoint", MODEL_METADATA_KEY)
        return None
    return dict(meta)


def save_safetensors(state_dict: Dict[str, torch.Tensor], path: str, metadata: Optional[Dict] = None) -> None:
    """Write model weights as .safetensors (tensors made contiguous; shared storage is copied), atomically, with
    the model's `metadata` (`model_metadata_of`) as JSON in the file's header."""
    from safetensors.torch import save

    header = {MODEL_METADATA_KEY: json.dumps(metadata)} if metadata else None
    data = save({k: torch.as_tensor(v).detach().contiguous().clone() for k, v in state_dict.items()}, header)
    with atomic_write(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_write(path: str, text: bool = False):
    """Open a temporary file beside `path` for binary (or `text`) writing; on success flush it to disk and rename it
    to `path` (atomic on POSIX), on failure remove it. A reader sees the old file or the whole new one, never a
    part."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # the permissions open() would give, not mkstemp's private 0600
    try:
        with os.fdopen(fd, "w" if text else "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


# ---- unpickling: what a weights pickle may build ----

# What a .pkl of weights needs to rebuild numpy arrays and containers; nothing here runs user-chosen code.
_PICKLE_ALLOWED = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
}


class _InertMetadata:
    """Stands in for a training-state object that frameworks pickle beside the weights (an mmengine
    `HistoryBuffer` of logged losses, a `ConfigDict`): built from the file's data without running any code of
    the original class, and holding nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass


def _inert_getattr(obj, name):
    """`getattr` as an mmengine checkpoint pickles it (a HistoryBuffer's statistics methods): only on stand-ins."""
    if obj is _InertMetadata or isinstance(obj, _InertMetadata):
        return _InertMetadata
    raise pickle.UnpicklingError(f"getattr({type(obj).__name__}, {name!r}) outside training metadata")


def _numpy_globals():
    reconstruct, scalar = np._core.multiarray._reconstruct, np._core.multiarray.scalar
    return [
        np.ndarray,
        np.dtype,
        *{type(np.dtype(c)) for c in "?bhilqBHILQefdgFDG"},
        reconstruct,
        scalar,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (scalar, "numpy.core.multiarray.scalar"),
    ]


# What `torch.load(weights_only=True)` may also build from a .pth: numpy arrays and scalars (MMDetection's and
# Detectron2's metadata), and inert stand-ins for mmengine's training state (MMDetection v3 checkpoints).
_TRAINING_METADATA = _numpy_globals() + [
    (_InertMetadata, "mmengine.logging.history_buffer.HistoryBuffer"),
    (_InertMetadata, "mmengine.config.config.ConfigDict"),
    (_inert_getattr, "builtins.getattr"),
]


class _WeightsUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module, name):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise _refuse(self._path, f"a reference to {module}.{name}")


def restricted_pickle_load(file, path: str):
    """Unpickle `file` (a binary file object) building only numpy arrays, numbers, strings and containers; a
    reference to anything else is an UnsafeCheckpointError naming `path`."""
    return _WeightsUnpickler(file, path).load()


def _read_pkl(path: str, allow_unsafe_pickle: bool):
    with open(path, "rb") as f:
        data = f.read()
    if allow_unsafe_pickle:
        return pickle.loads(data, encoding="latin1")
    return restricted_pickle_load(io.BytesIO(data), path)


def _read_pth(path: str, allow_unsafe_pickle: bool):
    if not allow_unsafe_pickle and not zipfile.is_zipfile(path):
        # Not torch's zip format: a plain pickle (or torch's legacy format), which torch's weights-only reader
        # cannot tell from a broken file. Ours builds only arrays and containers and names what it refuses.
        try:
            loaded = _read_pkl(path, allow_unsafe_pickle=False)
        except (UnsafeCheckpointError, EOFError):  # refused, or a truncated pickle
            raise
        except Exception as e:  # noqa: BLE001 (torch's legacy format, or a broken file: torch's reader decides)
            if "truncated" in str(e):
                raise
            loaded = None
        if isinstance(loaded, Mapping):  # (torch's legacy format starts with a pickled magic number)
            return loaded
    with open(path, "rb") as f, torch.serialization.safe_globals(_TRAINING_METADATA):
        return torch.load(f, map_location="cpu", weights_only=not allow_unsafe_pickle)


def _detectron2_pkl_layout(data, path: str) -> dict:
    """The layouts Detectron2 reads from .pkl files: its own {"model", "__author__"} dicts, and Caffe2 /
    converted-backbone blobs that need its name-matching heuristics."""
    if not isinstance(data, Mapping):
        raise WeightsFileError(f"{path} holds a {type(data).__name__}, not a Detectron2 / Caffe2 weights dict")
    if "model" in data and "__author__" in data:
        return dict(data)
    if "blobs" in data:
        data = data["blobs"]
    data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
    return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}


def _refuse(path: str, detail: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"Refusing to load {path}: unsafe: it contains pickled Python objects beyond weights ({detail}), and "
        f"unpickling them could execute code. If you trust this file, set {UNSAFE_FLAG}; or convert it once, in a "
        "trusted environment, to .safetensors (python -m cascade_det.convert to-safetensors IN OUT "
        "--allow-unsafe-pickle)."
    )


def _unreadable(path: str, error: Exception) -> WeightsFileError:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # torch's weights-only errors start with generic advice; what went wrong follows "WeightsUnpickler error:"
    marker = next((i for i, line in enumerate(lines) if "WeightsUnpickler error:" in line), None)
    if marker is not None:
        rest = lines[marker].split("WeightsUnpickler error:", 1)[1].strip()
        lines = [line for line in [rest, *lines[marker + 1 :]] if line]
    detail = lines[0] if lines else type(error).__name__
    return WeightsFileError(
        f"{path} cannot be read as a weights file ({type(error).__name__}: {detail}): it is truncated (an "
        "interrupted copy or save) or not a checkpoint. Use an intact copy."
    )


_GLOBAL_REFERENCE = re.compile(r"GLOBAL ([\w.]+)")


def _refused_reference(message: str) -> Optional[str]:
    """What torch's weights-only reader refused, when its error is a refusal of code (a reference to a global such
    as posix.system) rather than a broken file; None otherwise."""
    if "Weights only load failed" not in message and "WeightsUnpickler" not in message:
        return None
    found = _GLOBAL_REFERENCE.search(message)
    if found:
        return f"a reference to {found.group(1)}"
    if "reduce" in message.lower() or "blocked" in message:
        lines = [line.strip() for line in message.splitlines() if "reduce" in line.lower() or "blocked" in line]
        return lines[0] if lines else "a call the weights-only reader refused"
    return None
