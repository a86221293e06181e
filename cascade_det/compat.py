"""Make Detectron2 0.6 run on Python 3.11, numpy 2, Pillow >= 10 and torch 2.

Applied once when `cascade_det` is imported (import `cascade_det` before `detectron2.layers` or
`detectron2.data`). Each fix is one function, listed in `FIXES`, and each has a test in `tests/test_compat.py`
that fails without it. The breaks are measured facts (see `../shared/notes/detectron2-on-this-stack.md`):

| fix                        | break it repairs                                                              |
|----------------------------|-------------------------------------------------------------------------------|
| `missing_cpp_extension`    | the registry's Detectron2 sdist has no C++ sources, so `detectron2._C` is     |
|                            | missing and `import detectron2.layers` fails                                  |
| `pillow_linear`            | `PIL.Image.LINEAR` was removed in Pillow 10; `detectron2.data` uses it        |
| `numpy_aliases`            | `np.int`, `np.float`, `np.bool`, ... were removed in numpy 1.24               |
| `map_dataset_fallback`     | Python 3.11 `random.sample` refuses a set: MapDataset crashes when a mapper   |
|                            | skips a bad sample (returns None)                                             |
| `torch2_scheduler_state`   | torch 2 schedulers do not subclass `_LRScheduler`, so Detectron2's            |
|                            | `hooks.LRScheduler` silently neither saves nor restores them: resume is wrong |
| `coco_eval_fallback`       | `COCOeval_opt` needs the C++ extension; fall back to pycocotools' COCOeval    |
| `cpu_distributed`          | `create_ddp_model` passes a GPU id for CPU models (DDP refuses it)            |
"""
import importlib.util
import logging
import random
import sys
import types

import numpy as np

logger = logging.getLogger(__name__)

_applied = False


class CppOpUnavailableError(RuntimeError):
    """Raised when code asks for a Detectron2 C++ op that this pure-Python install does not have."""


def missing_cpp_extension() -> None:
    """Register a `detectron2._C` stand-in whose ops raise a clear error when used (not when imported)."""
    if "detectron2._C" in sys.modules:
        return
    import detectron2

    if importlib.util.find_spec("detectron2._C") is not None:  # a real build exists: keep it
        return

    module = types.ModuleType("detectron2._C")
    module.__file__ = __file__

    def get_compiler_version() -> str:
        return "not built (pure-Python Detectron2 install; see cascade_det.compat)"

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise CppOpUnavailableError(
            f"detectron2._C.{name} is a C++ op, and this Detectron2 install is pure Python (the registry's sdist "
            "ships no C++ sources). Cascade R-CNN does not need it: use the torchvision-backed ops "
            "(ROIAlign, NMS) or install Detectron2 built from source."
        )

    module.get_compiler_version = get_compiler_version
    module.get_cuda_version = get_compiler_version
    module.has_cuda = lambda: False
    module.__getattr__ = __getattr__
    sys.modules["detectron2._C"] = module
    detectron2._C = module


def pillow_linear() -> None:
    from PIL import Image

    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR


def numpy_aliases() -> None:
    # Only the names numpy removed; each maps to the builtin the old alias stood for.
    for name, builtin in (("int", int), ("float", float), ("bool", bool), ("object", object), ("str", str)):
        if name not in np.__dict__:
            setattr(np, name, builtin)


class _SortedSampleRandom(random.Random):
    """`random.Random` whose `sample` accepts a set, as Python < 3.11 did (sorted first, so it stays seeded)."""

    def sample(self, population, k, **kwargs):
        if isinstance(population, (set, frozenset)):
            population = sorted(population)
        return super().sample(population, k, **kwargs)


def map_dataset_fallback() -> None:
    from detectron2.data import common

    if getattr(common.MapDataset.__init__, "_cascade_det_fixed", False):
        return
    original_init = common.MapDataset.__init__

    def __init__(self, dataset, map_func):
        original_init(self, dataset, map_func)
        self._rng = _SortedSampleRandom(42)

    __init__._cascade_det_fixed = True
    common.MapDataset.__init__ = __init__


def torch2_scheduler_state() -> None:
    import torch
    from detectron2.engine import hooks

    if getattr(hooks.LRScheduler.state_dict, "_cascade_det_fixed", False):
        return
    scheduler_base = getattr(torch.optim.lr_scheduler, "LRScheduler", torch.optim.lr_scheduler._LRScheduler)

    def state_dict(self):
        if isinstance(self.scheduler, scheduler_base):
            return self.scheduler.state_dict()
        return {}

    def load_state_dict(self, state_dict):
        if isinstance(self.scheduler, scheduler_base):
            logging.getLogger("detectron2.engine.hooks").info("Loading scheduler from state_dict ...")
            self.scheduler.load_state_dict(state_dict)

    state_dict._cascade_det_fixed = True
    hooks.LRScheduler.state_dict = state_dict
    hooks.LRScheduler.load_state_dict = load_state_dict


def coco_eval_fallback() -> None:
    from detectron2.evaluation import coco_evaluation
    from pycocotools.cocoeval import COCOeval

    if getattr(sys.modules.get("detectron2._C"), "__file__", None) == __file__:  # only without the C++ build
        coco_evaluation.COCOeval_opt = COCOeval


def cpu_distributed() -> None:
    from detectron2.engine import defaults

    if getattr(defaults.create_ddp_model, "_cascade_det_fixed", False):
        return
    original = defaults.create_ddp_model

    def create_ddp_model(model, *, fp16_compression=False, **kwargs):
        on_cpu = all(not p.is_cuda for p in model.parameters())
        if on_cpu and "device_ids" not in kwargs:
            kwargs["device_ids"] = None  # DDP takes no device ids for CPU modules
        return original(model, fp16_compression=fp16_compression, **kwargs)

    create_ddp_model._cascade_det_fixed = True
    defaults.create_ddp_model = create_ddp_model
    import detectron2.engine

    detectron2.engine.create_ddp_model = create_ddp_model


# Order matters: the `_C` stand-in and the aliases must exist before the modules that need them are imported.
FIXES = (
    missing_cpp_extension,
    pillow_linear,
    numpy_aliases,
    map_dataset_fallback,
    torch2_scheduler_state,
    coco_eval_fallback,
    cpu_distributed,
)


def apply() -> None:
    """Apply every fix once; safe to call again."""
    global _applied
    if _applied:
        return
    for fix in FIXES:
        fix()
    _applied = True
