"""One safe door for weights: after `import cascade_det`, the loaders Detectron2 users reach read pickles the way
`cascade_det.weights.load_weights_file` does, so no code a pickle carries runs unless the user opts in.

What goes through it (applied once by `apply()`, at import):
  * `detectron2.checkpoint.DetectionCheckpointer._load_file` (DefaultPredictor, DefaultTrainer, Detectron2's tools,
    `.pkl` model-zoo and Caffe2 files, `.pth`, `.pyth` pycls files);
  * `fvcore.common.checkpoint.Checkpointer._load_file` (fvcore's own checkpointer and what subclasses it);
  * the proposal files of `DATASETS.PROPOSAL_FILES_*` (`detectron2.data.build.load_proposals_into_dataset`), read
    with an unpickler that only builds numpy arrays and containers.
The opt-in: a checkpointer's own `allow_unsafe_pickle` attribute (`SafeDetectionCheckpointer`), a DefaultTrainer's
yacs `MODEL.ALLOW_UNSAFE_PICKLE`, or the environment's `CASCADE_DET_ALLOW_UNSAFE_PICKLE=1` (the only one a loader
without a config, such as DefaultPredictor's, can see). A refusal names the file, says "unsafe" and names the flag.
"""

import io
import logging
import types
from typing import Dict

from .weights import WeightsFileError, load_weights_file, restricted_pickle_load, unsafe_pickle_allowed_by_environment

__all__ = ["apply", "detectron2_load_file"]

logger = logging.getLogger(__name__)
_applied = False


def _allows_unsafe(checkpointer) -> bool:
    """The opt-in that reaches this checkpointer: its own attribute, its trainer's yacs config, the environment."""
    own = getattr(checkpointer, "allow_unsafe_pickle", None)
    if own is not None:
        return bool(own)
    if unsafe_pickle_allowed_by_environment():
        return True
    trainer = getattr(checkpointer, "checkpointables", {}).get("trainer")  # DefaultTrainer passes itself (a proxy)
    try:
        return trainer is not None and trainer.cfg.MODEL.ALLOW_UNSAFE_PICKLE is True
    except (AttributeError, ReferenceError, KeyError, TypeError):
        return False


def detectron2_load_file(checkpointer, filename: str) -> Dict:
    """What Detectron2's `DetectionCheckpointer._load_file` returns for `filename` (the layouts of `.pkl`, `.pyth`
    and `.pth` files, main's `?matching_heuristics=True` query), read without running pickled code."""
    loaded = load_weights_file(filename, allow_unsafe_pickle=_allows_unsafe(checkpointer))
    if filename.endswith(".pyth"):  # pycls checkpoints, as Detectron2 main reads them
        state = loaded["model"].get("model_state") if isinstance(loaded["model"], dict) else None
        if state is None:
            raise WeightsFileError(f"{filename}: a pycls .pyth checkpoint must hold 'model_state'")
        weights = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        return {"model": weights, "__author__": "pycls", "matching_heuristics": True}
    parsed = getattr(checkpointer, "_parsed_url_during_load", None)  # Detectron2 main only
    if parsed is not None:
        from urllib.parse import parse_qs

        queries = parse_qs(parsed.query)
        if queries.pop("matching_heuristics", "False") == ["True"]:
            loaded["matching_heuristics"] = True
        if queries:
            raise WeightsFileError(f"{parsed.geturl()}: unsupported query {queries}")
    return loaded


def _fvcore_load_file(checkpointer, filename: str) -> Dict:
    return load_weights_file(filename, allow_unsafe_pickle=_allows_unsafe(checkpointer))


class _RestrictedPickle(types.ModuleType):
    """`pickle` as `detectron2.data.build` sees it: `load` builds only arrays and containers (proposal files)."""

    def __init__(self, pickle_module):
        super().__init__("pickle")
        self.__dict__.update({k: v for k, v in vars(pickle_module).items() if not k.startswith("__") and k != "load"})

    @staticmethod
    def load(file, **kwargs):
        name = getattr(file, "name", "a proposal file")
        return restricted_pickle_load(io.BytesIO(file.read()), str(name))


def apply() -> None:
    """Route Detectron2's and fvcore's weight loading (and Detectron2's proposal files) through the safe reader."""
    global _applied
    if _applied:
        return
    _applied = True
    import pickle

    from fvcore.common.checkpoint import Checkpointer

    import detectron2.data.build as build
    from detectron2.checkpoint import DetectionCheckpointer

    DetectionCheckpointer._load_file = detectron2_load_file
    Checkpointer._load_file = _fvcore_load_file
    build.pickle = _RestrictedPickle(pickle)
    logger.debug("Detectron2's and fvcore's checkpointers and proposal files read through cascade_det.weights")
