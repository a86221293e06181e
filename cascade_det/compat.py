"""Make Detectron2 0.6 run on Python 3.11, numpy 2, Pillow >= 10 and torch 2.

Applied when `cascade_det` is imported (import `cascade_det` before `detectron2.layers` or `detectron2.data`).
Each fix is one function, listed in `FIXES`, applied once, logging what it did at debug level
(`logging.getLogger("cascade_det.compat")`). Most first check whether the installed Detectron2 (0.6, or main, which
fixed some of these) and its stack need them and apply only then; `cpu_distributed` and `quiet_deprecated_imports`
apply to both versions, which share those breaks. Each has a test in `tests/test_compat.py`. The breaks were measured on
Detectron2 0.6 with Python 3.11, numpy 2, Pillow >= 10 and torch 2:

| fix                        | break it repairs                                                              |
|----------------------------|-------------------------------------------------------------------------------|
| `missing_cpp_extension`    | the registry's Detectron2 sdist has no C++ sources, so `detectron2._C` is     |
|                            | missing and `import detectron2.layers` fails                                  |
| `pillow_linear`            | `PIL.Image.LINEAR` was removed in Pillow 10; `detectron2.data` uses it        |
| `numpy_aliases`            | `np.int`, `np.float`, `np.bool`, ... were removed in numpy 1.24               |
| `quiet_deprecated_imports` | importing Detectron2 prints deprecation warnings (pkg_resources, torch.jit.   |
|                            | script x2): its modules are imported once with exactly those silenced         |
| `map_dataset_fallback`     | Python 3.11 `random.sample` refuses a set: MapDataset crashes when a mapper   |
|                            | skips a bad sample (returns None)                                             |
| `torch2_scheduler_state`   | torch 2 schedulers do not subclass `_LRScheduler`, so Detectron2's            |
|                            | `hooks.LRScheduler` silently neither saves nor restores them: resume is wrong |
| `coco_eval_fallback`       | `COCOeval_opt` needs the C++ extension: faster-coco-eval's COCOeval instead   |
| `lazy_save_interpolations` | `LazyConfig.save` resolves every interpolation while it walks the config: one |
|                            | that resolves only inside its parent (a module-level import) fails the save   |
| `cpu_distributed`          | `create_ddp_model` passes a GPU id for CPU models (DDP refuses it)            |
| `meshgrid_indexing`        | the anchor grid calls torch.meshgrid without `indexing` (a warning per run)   |
| `trainer_state`            | 0.6's `DefaultTrainer` leaves its inner trainer out of checkpoints (optimizer |
|                            | momentum, AMP scaler): a resumed run is not the run; main saves it            |
| `export_without_caffe2`    | `detectron2.export` imports caffe2, gone from PyTorch: TracingAdapter and     |
|                            | `detectron2.utils.analysis` fail to import                                    |
"""

import importlib.util
import logging
import os
import random
import sys
import types
from typing import Optional

import numpy as np

from .errors import Error

logger = logging.getLogger(__name__)

_applied = set()


class CppOpUnavailableError(Error, RuntimeError):
    """Raised when code asks for a Detectron2 C++ op that this pure-Python install does not have."""


def _source(module: str) -> str:
    """The source text of a Detectron2 module (e.g. "detectron2.data.build"), read without importing it or its
    package (so a check runs before the fixes that import needs); "" if there is no such file."""
    import detectron2

    path = os.path.join(os.path.dirname(detectron2.__file__), *module.split(".")[1:]) + ".py"
    if not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8") as f:
        return f.read()


def missing_cpp_extension() -> Optional[str]:
    """Register a `detectron2._C` stand-in whose ops raise a clear error when used (not when imported)."""
    if "detectron2._C" in sys.modules or importlib.util.find_spec("detectron2._C") is not None:
        return None  # a real build exists: keep it
    import detectron2

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
    return "no C++ extension: detectron2._C stand-in registered"


def pillow_linear() -> Optional[str]:
    from PIL import Image

    if hasattr(Image, "LINEAR") or "Image.LINEAR" not in _source("detectron2.data.transforms.transform"):
        return None
    Image.LINEAR = Image.BILINEAR
    return "PIL.Image.LINEAR (removed in Pillow 10) aliased to BILINEAR"


def numpy_aliases() -> Optional[str]:
    # Only the names numpy removed, and only if Detectron2 still uses one (0.6's class histogram does).
    removed = {
        n: b
        for n, b in (("int", int), ("float", float), ("bool", bool), ("object", object), ("str", str))
        if n not in np.__dict__
    }
    if not removed or "dtype=np.int" not in _source("detectron2.data.build"):
        return None
    for name, builtin in removed.items():
        setattr(np, name, builtin)
    return f"numpy aliases {sorted(removed)} restored"


class _SortedSampleRandom(random.Random):
    """`random.Random` whose `sample` accepts a set, as Python < 3.11 did (sorted first, so it stays seeded)."""

    def sample(self, population, k, **kwargs):
        if isinstance(population, (set, frozenset)):
            population = sorted(population)
        return super().sample(population, k, **kwargs)


def map_dataset_fallback() -> Optional[str]:
    if sys.version_info < (3, 11) or "sample(self._fallback_candidates" not in _source("detectron2.data.common"):
        return None
    from detectron2.data import common

    original_init = common.MapDataset.__init__

    def __init__(self, dataset, map_func):
        original_init(self, dataset, map_func)
        self._rng = _SortedSampleRandom(42)

    common.MapDataset.__init__ = __init__
    return "MapDataset falls back with random.sample over a sorted list (Python 3.11 refuses a set)"


def torch2_scheduler_state() -> Optional[str]:
    import torch

    schedulers = torch.optim.lr_scheduler
    # Detectron2 0.6 tests for torch's _LRScheduler, which torch 2's schedulers no longer subclass; main tests for
    # their common base.
    if "lr_scheduler._LRScheduler)" not in _source("detectron2.engine.hooks") or issubclass(
        schedulers.StepLR, schedulers._LRScheduler
    ):
        return None
    from detectron2.engine import hooks

    scheduler_base = getattr(schedulers, "LRScheduler", schedulers._LRScheduler)

    def state_dict(self):
        if isinstance(self.scheduler, scheduler_base):
            return self.scheduler.state_dict()
        return {}

    def load_state_dict(self, state_dict):
        if isinstance(self.scheduler, scheduler_base):
            logging.getLogger("detectron2.engine.hooks").info("Loading scheduler from state_dict ...")
            self.scheduler.load_state_dict(state_dict)

    hooks.LRScheduler.state_dict = state_dict
    hooks.LRScheduler.load_state_dict = load_state_dict
    return "hooks.LRScheduler saves and restores torch 2 schedulers"


def trainer_state() -> Optional[str]:
    """Detectron2 main's `DefaultTrainer.state_dict` / `load_state_dict` (the inner trainer's state: optimizer, AMP
    scaler) where the installed Detectron2 (0.6) lacks them."""
    from detectron2.engine import DefaultTrainer

    if "state_dict" in vars(DefaultTrainer):
        return None

    def state_dict(self):
        return {**super(DefaultTrainer, self).state_dict(), "_trainer": self._trainer.state_dict()}

    def load_state_dict(self, state_dict):
        super(DefaultTrainer, self).load_state_dict(state_dict)
        self._trainer.load_state_dict(state_dict["_trainer"])

    DefaultTrainer.state_dict = state_dict
    DefaultTrainer.load_state_dict = load_state_dict
    return "DefaultTrainer checkpoints hold the inner trainer's state (optimizer, AMP scaler), as on main"


def coco_eval_fallback() -> Optional[str]:
    """Detectron2's fast COCOeval (`COCOeval_opt`, used with `use_fast_impl=True`) is C++: without the build, use
    faster-coco-eval's (C++ as well, same numbers), or pycocotools' where faster-coco-eval is not installed."""
    if getattr(sys.modules.get("detectron2._C"), "__file__", None) != __file__:
        return None  # a real C++ build: its COCOeval works
    try:
        from faster_coco_eval import COCOeval_faster as fast
    except ImportError:
        from pycocotools.cocoeval import COCOeval as fast

    from detectron2.evaluation import coco_evaluation

    coco_evaluation.COCOeval_opt = _with_integer_image_ids(fast)
    return f"COCOEvaluator(use_fast_impl=True) evaluates with {fast.__module__}.{fast.__name__}"


def _with_integer_image_ids(eval_cls):
    """`eval_cls`, numbering string image ids (VOC's file stems) as integers first: faster-coco-eval's C++ core
    takes integer ids only (`TypeError: append_ref()` otherwise). The metrics do not depend on the ids."""
    from .image_ids import coco_with_integer_image_ids, integer_image_ids

    class IntegerImageIdsCOCOeval(eval_cls):
        def __init__(self, cocoGt=None, cocoDt=None, *args, **kwargs):
            if cocoGt is not None:
                mapping = integer_image_ids(cocoGt.getImgIds())
                cocoGt = coco_with_integer_image_ids(cocoGt, mapping)
                cocoDt = coco_with_integer_image_ids(cocoDt, mapping) if cocoDt is not None else None
            super().__init__(cocoGt, cocoDt, *args, **kwargs)

    IntegerImageIdsCOCOeval.__name__ = IntegerImageIdsCOCOeval.__qualname__ = eval_cls.__name__
    return IntegerImageIdsCOCOeval


def lazy_save_interpolations() -> Optional[str]:
    """`LazyConfig.save` walks the config with `.values()`, which resolves every interpolation: one that only
    resolves inside its parent (a module-level `mask_head` whose `num_classes="${...num_classes}"`, a loop variable
    left at module level) fails the save (InterpolationKeyError), and with it train_net.py. Walk the nodes instead,
    resolving nothing, as the `to_container(resolve=False)` that follows already does."""
    from omegaconf import DictConfig, ListConfig

    from detectron2.config import lazy

    def visit_nodes(cfg, func):
        if isinstance(cfg, DictConfig):
            func(cfg)
            for key in cfg:  # keys only: nothing is resolved
                visit_nodes(cfg._get_node(key), func)
        elif isinstance(cfg, ListConfig):
            for i in range(len(cfg)):
                visit_nodes(cfg._get_node(i), func)

    try:
        lazy._visit_dict_config(lazy.OmegaConf.create({"inner": {"n": "${..absent}"}}), lambda node: None)
    except Exception:
        lazy._visit_dict_config = visit_nodes
        return "LazyConfig.save walks the config without resolving its interpolations"
    return None


def cpu_distributed() -> Optional[str]:
    import detectron2.engine
    from detectron2.engine import defaults

    original = defaults.create_ddp_model

    def create_ddp_model(model, *, fp16_compression=False, **kwargs):
        on_cpu = all(not p.is_cuda for p in model.parameters())
        if on_cpu and "device_ids" not in kwargs:
            kwargs["device_ids"] = None  # DDP takes no device ids for CPU modules
        return original(model, fp16_compression=fp16_compression, **kwargs)

    defaults.create_ddp_model = create_ddp_model
    detectron2.engine.create_ddp_model = create_ddp_model
    return "create_ddp_model passes no device ids for CPU models"


def meshgrid_indexing() -> Optional[str]:
    """Detectron2's anchor grid calls torch.meshgrid without `indexing` (its default, "ij", is what it means), and
    torch warns about that at the first forward pass: exactly that warning is silenced around that one call."""
    if "torch.meshgrid(shifts_y, shifts_x)" not in _source("detectron2.modeling.anchor_generator"):
        return None
    import warnings

    from detectron2.modeling import anchor_generator

    original = anchor_generator._create_grid_offsets

    def _create_grid_offsets(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="torch.meshgrid: in an upcoming release", category=UserWarning)
            return original(*args, **kwargs)

    anchor_generator._create_grid_offsets = _create_grid_offsets
    return "the anchor grid's torch.meshgrid indexing warning silenced (its grid is the 'ij' one torch defaults to)"


def quiet_deprecated_imports() -> Optional[str]:
    """Import, once and without their deprecation warnings, what Detectron2 imports that warns on this stack:
    `pkg_resources` (setuptools' deprecated API, used by detectron2.model_zoo), the modules that decorate
    functions with the deprecated `torch.jit.script`, and `timm.models.layers` (timm's old path, which Detectron2
    main's ViT blocks import). Later imports find them imported, so nothing else is silenced."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message="Importing from timm.models.layers", category=FutureWarning)
        importlib.import_module("pkg_resources")
        importlib.import_module("timm.models.layers")
        for module in ("detectron2.modeling.box_regression", "detectron2.structures.keypoints"):
            importlib.import_module(module)
    return (
        "pkg_resources, Detectron2's torch.jit.script modules and timm.models.layers imported without their "
        "deprecation warnings"
    )


def export_without_caffe2() -> Optional[str]:
    """Detectron2 0.6's `detectron2.export` imports caffe2 (gone from PyTorch) in its __init__, so
    `from detectron2.export import TracingAdapter` (and `detectron2.utils.analysis`, which needs it) fails. Main
    imports caffe2 only if present; this gives 0.6 the same: the package with its tracing and scripting parts."""
    unconditional = any(
        line.startswith("from .api import") for line in _source("detectron2.export.__init__").splitlines()
    )
    if not unconditional or importlib.util.find_spec("caffe2"):  # main imports .api only where caffe2 is
        return None
    if "detectron2.export" in sys.modules:
        return None
    import detectron2

    package = types.ModuleType("detectron2.export")
    package.__path__ = [os.path.join(os.path.dirname(detectron2.__file__), "export")]
    package.__package__ = "detectron2.export"
    sys.modules["detectron2.export"] = package
    detectron2.export = package
    from detectron2.export.flatten import TracingAdapter
    from detectron2.export.torchscript import dump_torchscript_IR, scripting_with_instances

    package.TracingAdapter = TracingAdapter
    package.dump_torchscript_IR = dump_torchscript_IR
    package.scripting_with_instances = scripting_with_instances
    package.__all__ = ["TracingAdapter", "dump_torchscript_IR", "scripting_with_instances"]
    return "detectron2.export without its caffe2 parts (TracingAdapter, scripting_with_instances)"


# Order matters: the `_C` stand-in and the aliases must exist before the modules that need them are imported.
FIXES = (
    missing_cpp_extension,
    pillow_linear,
    numpy_aliases,
    quiet_deprecated_imports,
    map_dataset_fallback,
    torch2_scheduler_state,
    trainer_state,
    coco_eval_fallback,
    lazy_save_interpolations,
    cpu_distributed,
    meshgrid_indexing,
    export_without_caffe2,
)


def apply() -> None:
    """Apply each fix the installed Detectron2 needs, once; safe to call again."""
    for fix in FIXES:
        if fix.__name__ in _applied:
            continue
        _applied.add(fix.__name__)
        done = fix()
        logger.debug("compat %s: %s", fix.__name__, done or "not needed here")
