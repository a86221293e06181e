"""Checkpoint loading that never runs code from a file unless the user says so, and safetensors support.

A `.pth` or `.pkl` checkpoint is a pickle, and unpickling can execute arbitrary code. `SafeDetectionCheckpointer`
loads:
  .pth          with `torch.load(weights_only=True)`: tensors, containers, numbers, numpy arrays, and inert
                stand-ins for mmengine's logged training state (MMDetection v3 checkpoints);
  .pkl          (Detectron2 model zoo, Detectron/Caffe2, converted ImageNet backbones) with an unpickler that
                only builds numpy arrays and plain containers;
  .safetensors  model weights, no pickle at all.
An MMDetection Cascade (Mask) R-CNN checkpoint is recognised by its layout and converted (`cascade_det.convert`).
A torchvision ImageNet ResNet file (`resnet50-*.pth`, the MMDetection recipe's initialisation) is recognised and
renamed for Detectron2's backbone; MSRA `R-50.pkl` (Detectron2's recipes) goes through Detectron2's own
Caffe2-name conversion.
Anything else in a pickle is refused with `UnsafeCheckpointError`, whose message names the file and the flag that
allows it (`train.allow_unsafe_pickle=True` / `MODEL.ALLOW_UNSAFE_PICKLE True`), to be used only for trusted files.

    python -m cascade_det.checkpoint to-safetensors model_final.pth model_final.safetensors
"""
import argparse
import io
import logging
import os
import pickle
import re
from typing import Dict

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

__all__ = [
    "SafeDetectionCheckpointer",
    "UnsafeCheckpointError",
    "load_safe_pickle",
    "missing_weights_advice",
    "save_safetensors",
    "torchvision_resnet_to_detectron2",
]

logger = logging.getLogger(__name__)

# What a weights pickle needs to rebuild numpy arrays and containers; nothing here runs user-chosen code.
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
_UNSAFE_FLAG = "train.allow_unsafe_pickle=True (LazyConfig) or MODEL.ALLOW_UNSAFE_PICKLE True (yacs)"




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
    import numpy as np

    reconstruct, scalar = np._core.multiarray._reconstruct, np._core.multiarray.scalar
    return [np.ndarray, np.dtype, *{type(np.dtype(c)) for c in "?bhilqBHILQefdgFDG"}, reconstruct, scalar,
            (reconstruct, "numpy.core.multiarray._reconstruct"), (scalar, "numpy.core.multiarray.scalar")]


# What `torch.load(weights_only=True)` may also build from a .pth: numpy arrays and scalars (MMDetection's and
# Detectron2's metadata), and inert stand-ins for mmengine's training state (MMDetection v3 checkpoints).
_TRAINING_METADATA = _numpy_globals() + [
    (_InertMetadata, "mmengine.logging.history_buffer.HistoryBuffer"),
    (_InertMetadata, "mmengine.config.config.ConfigDict"),
    (_inert_getattr, "builtins.getattr"),
]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint holds pickled objects beyond weights; loading it could execute code."""


def _refuse(path: str, detail: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"Refusing to load {path}: it contains pickled Python objects beyond weights ({detail}), and unpickling "
        f"them could execute code. If you trust this file, set {_UNSAFE_FLAG}; or convert it once, in a trusted "
        "environment, to .safetensors (python -m cascade_det.checkpoint to-safetensors IN OUT)."
    )


class _WeightsUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module, name):
        if (module, name) in _PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise _refuse(self._path, f"a reference to {module}.{name}")


def load_safe_pickle(path: str):
    """Unpickle a weights file (dicts of numpy arrays) without running any code it may carry."""
    with PathManager.open(path, "rb") as f:
        return _WeightsUnpickler(io.BytesIO(f.read()), path).load()


def save_safetensors(state_dict: Dict[str, torch.Tensor], path: str) -> None:
    """Write model weights as .safetensors (tensors made contiguous; shared storage is copied)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in state_dict.items()}, path)


def missing_weights_advice(path: str) -> str:
    """What to say when a weights file is not on disk (nothing is downloaded for the user)."""
    return (
        f"{path} does not exist. Weights are read from local files only: put the file on this machine and give its "
        "path: an ImageNet backbone (torchvision's resnet50-0676ba61.pth for the MMDetection-recipe configs, "
        "MSRA's R-50.pkl for Detectron2's), a published Detectron2 or MMDetection checkpoint, or your own."
    )


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """`DetectionCheckpointer` whose loading runs no pickled code unless `allow_unsafe_pickle` is set."""

    def load(self, path: str, *args, **kwargs):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(missing_weights_advice(path))
        return super().load(path, *args, **kwargs)

    def __init__(self, model, save_dir="", *, allow_unsafe_pickle: bool = False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.last_load_report: Dict[str, list] = {}

    def _load_model(self, checkpoint):
        """Load as Detectron2 does, then report what was matched (logged, and kept in `last_load_report`)."""
        incompatible = super()._load_model(checkpoint)
        skipped = {k for k, *_ in incompatible.incorrect_shapes} | set(incompatible.missing_keys)
        model_keys = list(self.model.state_dict())
        self.last_load_report = {
            "matched": [k for k in model_keys if k not in skipped],
            "missing": list(incompatible.missing_keys),
            "unexpected": list(incompatible.unexpected_keys),
            "incorrect_shapes": [k for k, *_ in incompatible.incorrect_shapes],
        }
        report = self.last_load_report
        logger.info(
            "Checkpoint matched %d of %d model tensors (%d missing, %d with another shape, %d unused in the file)",
            len(report["matched"]), len(model_keys), len(report["missing"]), len(report["incorrect_shapes"]),
            len(report["unexpected"]),
        )
        return incompatible

    def _load_file(self, filename: str):
        checkpoint = self._read_file(filename)
        return _from_mmdetection(checkpoint, self.model) or _from_torchvision_resnet(checkpoint)

    def _read_file(self, filename: str):
        if filename.endswith(".safetensors"):
            from safetensors.torch import load_file

            return {"model": load_file(filename), "__author__": "safetensors"}
        if self.allow_unsafe_pickle:
            logger.warning("Loading %s with arbitrary unpickling (allow_unsafe_pickle is set)", filename)
        if filename.endswith(".pkl"):
            if self.allow_unsafe_pickle:
                return super()._load_file(filename)
            return self._wrap_pickle(load_safe_pickle(filename))
        try:
            with PathManager.open(filename, "rb") as f, torch.serialization.safe_globals(_TRAINING_METADATA):
                loaded = torch.load(f, map_location="cpu", weights_only=not self.allow_unsafe_pickle)
        except pickle.UnpicklingError as e:
            if self.allow_unsafe_pickle:
                raise
            raise _refuse(filename, _unpickler_detail(str(e))) from e
        return loaded if "model" in loaded else {"model": loaded}

    @staticmethod
    def _wrap_pickle(data) -> dict:
        """The layouts Detectron2 reads from .pkl files: its own {"model", "__author__"} dicts, and Caffe2 /
        converted-backbone blobs that need its name-matching heuristics."""
        if "model" in data and "__author__" in data:
            return data
        if "blobs" in data:
            data = data["blobs"]
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}


_TORCHVISION_RESNET = re.compile(r"^layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.+)$")
_TORCHVISION_SHORTCUT = re.compile(r"^layer(\d)\.(\d+)\.downsample\.([01])\.(.+)$")


def torchvision_resnet_to_detectron2(weights: Dict[str, torch.Tensor], prefix: str = "backbone.bottom_up.") -> Dict:
    """Rename a torchvision ResNet/ResNeXt ImageNet state dict (`resnet50-*.pth`: conv1, bn1, layer1.0.conv1, ...,
    layer1.0.downsample.0/1, fc) to Detectron2's ResNet names under `prefix` (stem.conv1, stem.conv1.norm,
    res2.0.conv1, res2.0.conv1.norm, ..., res2.0.shortcut(.norm)). The classifier (fc) and BN step counters
    are dropped. Use it with a torchvision-style backbone (stride in the 3x3 conv: stride_in_1x1=False)."""
    out = {}
    for key, value in weights.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        if key.startswith(("conv1.", "bn1.")):
            name = "stem.conv1." + ("norm." if key.startswith("bn1.") else "") + key.split(".", 1)[1]
        elif m := _TORCHVISION_RESNET.match(key):
            stage, block, kind, index, rest = m.groups()
            name = f"res{int(stage) + 1}.{block}.conv{index}." + ("norm." if kind == "bn" else "") + rest
        elif m := _TORCHVISION_SHORTCUT.match(key):
            stage, block, part, rest = m.groups()
            name = f"res{int(stage) + 1}.{block}.shortcut." + ("norm." if part == "1" else "") + rest
        else:
            raise KeyError(f"{key} is not a torchvision ResNet parameter name")
        out[prefix + name] = value
    return out


def _unpickler_detail(message: str) -> str:
    """The line of torch's weights-only error that says what was refused (it wraps it in generic advice)."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("WeightsUnpickler error:"):
            rest = line[len("WeightsUnpickler error:"):].strip()
            return rest or (lines[i + 1] if i + 1 < len(lines) else line)
    return lines[0] if lines else "unreadable pickle"


def _from_mmdetection(checkpoint: dict, model: torch.nn.Module):
    """An MMDetection Cascade R-CNN checkpoint, recognised by its layout, converted for `model` (its stages'
    box-coder weights); None for any other checkpoint."""
    # Imported here: cascade_det.convert builds on this module.
    from .convert import DETECTRON2_CASCADE_WEIGHTS, MMDET_CASCADE_TARGET_STDS, mmdet_state_dict, mmdet_to_detectron2
    from .convert import stage_box_coder_weights

    weights = mmdet_state_dict(checkpoint["model"])
    if weights is None:
        return None
    bbox_reg_weights = stage_box_coder_weights(model) or DETECTRON2_CASCADE_WEIGHTS
    logger.info(
        "Reading an MMDetection checkpoint: converting it (names; box-coder stds %s to weights %s)",
        MMDET_CASCADE_TARGET_STDS, bbox_reg_weights,
    )
    converted = mmdet_to_detectron2(weights, MMDET_CASCADE_TARGET_STDS[: len(bbox_reg_weights)], bbox_reg_weights)
    return {"model": converted, "__author__": "MMDetection"}


def _from_torchvision_resnet(checkpoint: dict) -> dict:
    """A torchvision ImageNet ResNet file, recognised by its layout, renamed for Detectron2's ResNet."""
    weights = checkpoint.get("model", checkpoint)
    if "fc.weight" in weights and "layer1.0.conv1.weight" in weights:
        logger.info("Reading torchvision ImageNet ResNet weights; renaming them for the Detectron2 backbone")
        return {"model": torchvision_resnet_to_detectron2(weights), "__author__": "torchvision"}
    return checkpoint


def add_file_conversion_arguments(parser: argparse.ArgumentParser, input_help: str, output_help: str) -> None:
    """The arguments every weights-file command takes: input, output (never overwritten), --allow-unsafe-pickle."""
    parser.add_argument("input", help=input_help)
    parser.add_argument("output", help=output_help + "; must not exist")
    parser.add_argument("--allow-unsafe-pickle", action="store_true", help="unpickle arbitrary objects (trusted files)")


def parse_file_conversion_arguments(parser: argparse.ArgumentParser, argv) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if os.path.exists(args.output):
        parser.error(f"{args.output} exists; not overwriting it")
    return args


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cascade_det.checkpoint", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("to-safetensors", help="write a checkpoint's model weights as .safetensors")
    add_file_conversion_arguments(export, "a .pth or .pkl checkpoint", "the .safetensors file to write")
    args = parse_file_conversion_arguments(parser, argv)
    checkpointer = SafeDetectionCheckpointer(torch.nn.Module(), allow_unsafe_pickle=args.allow_unsafe_pickle)
    weights = checkpointer._load_file(args.input)["model"]
    tensors = {k: torch.as_tensor(v) for k, v in weights.items()}
    save_safetensors(tensors, args.output)
    print(f"wrote {len(tensors)} tensors to {args.output}")


if __name__ == "__main__":
    main()
