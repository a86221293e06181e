"""`RunConfig`: everything the trainer needs from a config, whichever style wrote it, computed once per run.

Detectron2's `DefaultTrainer` reads yacs keys (`cfg.SOLVER.MAX_ITER`, ...) and builds from them; LazyConfig files
describe objects to `instantiate` instead. Every difference between the two styles lives here, in two small classes
with one interface: the run's settings (validated, each error naming the key in the user's own style and the type it
expects) and the builders (model, optimizer, scheduler, training and test loaders, evaluators). The trainer reads
straight through.
"""

import copy
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

import detectron2.data.transforms as T
from detectron2.config import CfgNode, LazyConfig, instantiate
from detectron2.data import DatasetMapper, build_detection_test_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.solver import LRMultiplier, build_lr_scheduler, build_optimizer

from ..config import OPTIONS, yacs_option
from ..data import build_train_loader, mapped_with_file_errors
from ..evaluation import BACKENDS, FinalDetections, PerStageCOCOEvaluator
from ..modeling import CascadeRCNNROIHeads
from ..modeling.speed import optimize_for_speed

__all__ = ["ConfigValueError", "LazyRunConfig", "RunConfig", "YacsRunConfig"]

logger = logging.getLogger("cascade_det")


class ConfigValueError(ValueError):
    """A config value of the wrong type or range; the message names the key and what it expects."""


def _positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _non_negative_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _bool(v):
    return isinstance(v, bool)


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _text(v):
    return isinstance(v, str)


# name: (LazyConfig key, yacs key or None (fixed value below), check, what it expects)
_SETTINGS = {
    "output_dir": ("train.output_dir", "OUTPUT_DIR", lambda v: _text(v) and v != "", "a folder path"),
    "max_iter": ("train.max_iter", "SOLVER.MAX_ITER", _positive_int, "a positive integer"),
    "weights": ("train.init_checkpoint", "MODEL.WEIGHTS", lambda v: v is None or _text(v), "a file path or ''"),
    "amp": ("train.amp.enabled", "SOLVER.AMP.ENABLED", _bool, "true or false"),
    "checkpoint_period": ("train.checkpointer.period", "SOLVER.CHECKPOINT_PERIOD", _positive_int, "a positive integer"),
    "max_to_keep": (
        "train.checkpointer.max_to_keep",
        None,
        lambda v: v is None or _positive_int(v),
        "a positive integer, or null for all",
    ),
    "eval_period": ("train.eval_period", "TEST.EVAL_PERIOD", _non_negative_int, "an integer >= 0"),
    "log_period": ("train.log_period", None, _positive_int, "a positive integer"),
    "seed": ("train.seed", "SEED", _int, "an integer (< 0: a random seed)"),
    "device": ("train.device", "MODEL.DEVICE", _text, "a device name such as 'cpu' or 'cuda'"),
    "per_stage_eval": ("train.per_stage_eval", "TEST.PER_STAGE_EVAL", _bool, "true or false"),
    "eval_backend": ("train.eval_backend", "TEST.EVAL_BACKEND", lambda v: v in BACKENDS, f"one of {BACKENDS}"),
    "allow_unsafe_pickle": ("train.allow_unsafe_pickle", "MODEL.ALLOW_UNSAFE_PICKLE", _bool, "true or false"),
    "allow_partial_checkpoint": (
        "train.allow_partial_checkpoint",
        "MODEL.ALLOW_PARTIAL_CHECKPOINT",
        _bool,
        "true or false",
    ),
    "fold_frozen_bn": ("train.speed.fold_frozen_bn", "MODEL.SPEED.FOLD_FROZEN_BN", _bool, "true or false"),
    "channels_last_inference": (
        "train.speed.channels_last_inference",
        "MODEL.SPEED.CHANNELS_LAST_INFERENCE",
        _bool,
        "true or false",
    ),
    "loss_explosion_factor": (
        "train.loss_explosion_factor",
        "SOLVER.LOSS_EXPLOSION_FACTOR",
        lambda v: _number(v) and v >= 0,
        "a number >= 0 (0: off)",
    ),
    "reference_world_size": (
        "train.reference_world_size",
        "SOLVER.REFERENCE_WORLD_SIZE",
        _non_negative_int,
        "an integer >= 0",
    ),
    "total_batch_size": (
        "dataloader.train.total_batch_size",
        "SOLVER.IMS_PER_BATCH",
        _positive_int,
        "a positive multiple of the number of processes",
    ),
    "num_workers": ("dataloader.train.num_workers", "DATALOADER.NUM_WORKERS", _non_negative_int, "an integer >= 0"),
    "base_lr": ("optimizer.lr", "SOLVER.BASE_LR", lambda v: _number(v) and v > 0, "a positive number"),
}
_YACS_FIXED = {"max_to_keep": None, "log_period": 20}
_DEFAULTS = {o.lazy: o.default for o in OPTIONS if o.lazy} | {"train.checkpointer.max_to_keep": None}


class RunConfig:
    """A run's config and what is derived from it. Build it with `RunConfig.of(cfg)`; `cfg` stays available.

    Settings (attributes): output_dir, max_iter, weights, amp, checkpoint_period, max_to_keep, eval_period,
    log_period, seed, device, per_stage_eval, allow_unsafe_pickle, allow_partial_checkpoint, fold_frozen_bn,
    channels_last_inference, loss_explosion_factor, reference_world_size, train_datasets, test_datasets,
    ddp (DistributedDataParallel keyword arguments), precise_bn ((period, iterations) or None).
    """

    style = ""
    cfg: Any

    @staticmethod
    def of(cfg, world_size: int = 1) -> "RunConfig":
        """The RunConfig of `cfg` (a yacs CfgNode or a LazyConfig), scaled to `world_size` processes where the config
        asks for it (train.reference_world_size / SOLVER.REFERENCE_WORLD_SIZE). A RunConfig is returned as it is."""
        if isinstance(cfg, RunConfig):
            return cfg
        run = LazyRunConfig(cfg) if isinstance(cfg, DictConfig) else YacsRunConfig(cfg)
        run.scale_to_world_size(world_size)
        run.read_settings()
        if run.total_batch_size % world_size:
            raise ConfigValueError(
                f"{run.key('total_batch_size')}={run.total_batch_size}: expected a positive multiple of the number of "
                f"processes ({world_size})"
            )
        return run

    # ---- settings ----
    def key(self, name: str) -> str:
        """The config key of setting `name` in this config's style (for messages)."""
        lazy, yacs, *_ = _SETTINGS[name]
        return lazy if self.style == "lazy" else (yacs or f"(fixed for yacs: {_YACS_FIXED[name]})")

    def read_settings(self) -> None:
        for name, (_, _, check, expected) in _SETTINGS.items():
            value = self._raw(name)
            if not check(value):
                raise ConfigValueError(f"{self.key(name)}={value!r}: expected {expected}")
            setattr(self, name, value)
        self.weights = self.weights or ""
        self.train_datasets = self._dataset_names("train")
        self.test_datasets = self._dataset_names("test")
        self.ddp = self._ddp()

    def _ddp(self) -> Dict[str, Any]:
        """Keyword arguments of DistributedDataParallel (create_ddp_model)."""
        raise NotImplementedError

    def _raw(self, name: str):
        raise NotImplementedError

    def _dataset_names(self, split: str) -> List[str]:
        raise NotImplementedError

    def dataset_key(self, split: str) -> str:
        raise NotImplementedError

    @property
    def num_classes_key(self) -> str:
        raise NotImplementedError

    def num_classes(self) -> Optional[int]:
        """The model's number of foreground classes (None: not set yet, to come from the datasets)."""
        raise NotImplementedError

    def set_num_classes(self, n: int) -> None:
        raise NotImplementedError

    def roi_heads_class(self) -> Optional[type]:
        raise NotImplementedError

    def use_cpu_without_cuda(self) -> None:
        """A config written for GPUs still runs on a machine without one: switch its device to CPU, and say so."""
        if not torch.cuda.is_available() and str(self.device).startswith("cuda"):
            logger.warning("No CUDA device: running on the CPU (%s was %s)", self.key("device"), self.device)
            self.set("device", "cpu")

    def set(self, name: str, value) -> None:
        """Set setting `name` in the config and here (e.g. the seed a run chose)."""
        self._set(name, value)
        setattr(self, name, value)

    def _set(self, name: str, value) -> None:
        raise NotImplementedError

    def check_per_stage_eval(self) -> None:
        """Per-stage evaluation needs cascade heads: refuse it for another model when the run is set up."""
        heads = self.roi_heads_class()
        if self.per_stage_eval and not (isinstance(heads, type) and issubclass(heads, CascadeRCNNROIHeads)):
            name = getattr(heads, "__name__", heads)
            raise ConfigValueError(
                f"{self.key('per_stage_eval')}=True needs cascade heads (CascadeRCNNROIHeads), but this model's ROI "
                f"heads are {name}: set {self.key('per_stage_eval')}=False"
            )

    # ---- builders ----
    def build_model(self) -> torch.nn.Module:
        """The model on its device, with the speed options applied (and the stage detections per-stage evaluation
        reads)."""
        model = self._build_model()
        logger.info("Model:\n%s", model)
        return optimize_for_speed(
            model, fold_frozen_bn=self.fold_frozen_bn, channels_last_inference=self.channels_last_inference
        )

    def _build_model(self):
        raise NotImplementedError

    def build_optimizer(self, model):
        raise NotImplementedError

    def build_lr_scheduler(self, optimizer):
        raise NotImplementedError

    def build_train_loader(self):
        raise NotImplementedError

    def build_train_mapper(self) -> Callable:
        """The training loader's dataset mapper, its augmentation included (to look at what training sees)."""
        raise NotImplementedError

    def build_test_loader(self, dataset_name: str):
        raise NotImplementedError

    def test_preprocessing(self) -> Tuple[str, List[T.Augmentation]]:
        """(the model's input format, the test-time augmentations) as evaluation applies them to an image."""
        raise NotImplementedError

    def build_evaluator(self, dataset_name: str, output_dir: str):
        """The evaluator of one test dataset, writing into `output_dir`: the config's own (COCO), seeing the model's
        own detections, plus per-stage AP where per-stage evaluation is on."""
        evaluator = FinalDetections(self._build_evaluator(dataset_name, output_dir))
        if not self.per_stage_eval:
            return evaluator
        return DatasetEvaluators([evaluator, PerStageCOCOEvaluator(dataset_name, output_dir, self.eval_backend)])

    def _build_evaluator(self, dataset_name: str, output_dir: str):
        raise NotImplementedError

    def scale_to_world_size(self, world_size: int) -> None:
        raise NotImplementedError

    def dump(self, path: str) -> None:
        """Save the config (as the run uses it) to `path`."""
        raise NotImplementedError

    def precise_bn(self):
        return None


class LazyRunConfig(RunConfig):
    """A LazyConfig: `model`, `dataloader.{train,test,evaluator}`, `optimizer`, `lr_multiplier`, `train`."""

    style = "lazy"

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def _raw(self, name):
        key = _SETTINGS[name][0]
        value = OmegaConf.select(self.cfg, key, default=_DEFAULTS.get(key, _MISSING))
        if value is _MISSING:
            raise ConfigValueError(f"{key} is missing from this config (expected {_SETTINGS[name][3]})")
        return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value

    def _set(self, name, value):
        OmegaConf.update(self.cfg, _SETTINGS[name][0], value, merge=False)

    def _ddp(self):
        ddp = OmegaConf.select(self.cfg, "train.ddp", default=None)
        return OmegaConf.to_container(ddp, resolve=True) if ddp is not None else {"broadcast_buffers": False}

    def _dataset_names(self, split):
        names = OmegaConf.select(self.cfg, f"dataloader.{split}.dataset.names", default=None)
        if names is None:
            return []
        return [names] if isinstance(names, str) else list(names)

    def dataset_key(self, split):
        return f"dataloader.{split}.dataset.names"

    @property
    def num_classes_key(self):
        return "model.roi_heads.num_classes"

    def num_classes(self):
        return OmegaConf.select(self.cfg, "model.roi_heads.num_classes", default=None)

    def set_num_classes(self, n):
        self.cfg.model.roi_heads.num_classes = int(n)

    def roi_heads_class(self):
        target = OmegaConf.select(self.cfg, "model.roi_heads._target_", default=None)
        if isinstance(target, str):
            from detectron2.config.instantiate import locate

            target = locate(target)
        return target

    def _build_model(self):
        if self.per_stage_eval:
            self.cfg.model.roi_heads.return_stage_detections = True
        model = instantiate(self.cfg.model)
        return model.to(self.device)

    def build_optimizer(self, model):
        self.cfg.optimizer.params.model = model
        try:
            return instantiate(self.cfg.optimizer)
        finally:
            self.cfg.optimizer.params.model = None  # keep the config free of the model object (it is saved)

    def build_lr_scheduler(self, optimizer):
        return LRMultiplier(optimizer, instantiate(self.cfg.lr_multiplier), self.max_iter)

    def build_train_loader(self):
        return instantiate(self.cfg.dataloader.train)

    def build_train_mapper(self):
        return instantiate(self.cfg.dataloader.train.mapper)

    def test_preprocessing(self):
        mapper = OmegaConf.select(self.cfg, "dataloader.test.mapper", default=None)
        augmentations = [instantiate(a) for a in mapper.augmentations] if mapper is not None else []
        return str(self.cfg.model.get("input_format", "BGR")), augmentations

    def build_test_loader(self, dataset_name):
        loader = copy.deepcopy(self.cfg.dataloader.test)
        loader.dataset.names = dataset_name
        loader.mapper = _NamedErrorsMapper(instantiate(loader.mapper), f"the test set {dataset_name!r}")
        return instantiate(loader)

    def _build_evaluator(self, dataset_name, output_dir):
        evaluator = copy.deepcopy(self.cfg.dataloader.evaluator)
        evaluator.dataset_name = dataset_name
        evaluator.output_dir = output_dir
        if _accepts(evaluator, "use_fast_impl"):
            evaluator.use_fast_impl = self.eval_backend == "faster-coco-eval"
        return instantiate(evaluator)

    def scale_to_world_size(self, world_size):
        """LazyConfig counterpart of Detectron2's yacs `SOLVER.REFERENCE_WORLD_SIZE` rule, in place.

        A config written for `train.reference_world_size` processes (e.g. 8 GPUs), run on `world_size` processes,
        keeps the images per process: the total batch size and the learning rate scale by world/reference, and the
        iteration counts (max_iter, eval and checkpoint periods) by reference/world, so the run sees the same number
        of epochs with the same schedule (the lr schedule is expressed in fractions of max_iter). 0 disables it."""
        cfg = self.cfg
        reference = cfg.train.get("reference_world_size", 0)
        if not reference or reference == world_size:
            return
        scale = world_size / reference
        batch = cfg.dataloader.train.total_batch_size * scale
        if batch != int(batch) or batch < 1:
            raise ConfigValueError(
                f"train.reference_world_size={reference} with {world_size} processes gives a total batch size of "
                f"{batch}: choose a process count that divides the batch evenly, or set train.reference_world_size=0"
            )
        cfg.dataloader.train.total_batch_size = int(batch)
        cfg.optimizer.lr = cfg.optimizer.lr * scale
        for key in ("max_iter", "eval_period"):
            cfg.train[key] = int(round(cfg.train[key] / scale))
        cfg.train.checkpointer.period = int(round(cfg.train.checkpointer.period / scale))
        cfg.train.reference_world_size = world_size  # applied: a saved config describes this run
        logger.info(
            "Scaled for %d processes (reference %d): total batch %d, lr %g, max_iter %d",
            world_size,
            reference,
            cfg.dataloader.train.total_batch_size,
            cfg.optimizer.lr,
            cfg.train.max_iter,
        )

    def dump(self, path):
        LazyConfig.save(self.cfg, path)


class YacsRunConfig(RunConfig):
    """A yacs CfgNode with `add_cascade_config` applied; built through Detectron2's own builders."""

    style = "yacs"

    def __init__(self, cfg: CfgNode):
        self.cfg = cfg.clone()
        self.cfg.freeze()

    def _raw(self, name):
        key = _SETTINGS[name][1]
        if key is None:
            return _YACS_FIXED[name]
        if key.startswith(("TEST.PER_STAGE_EVAL", "TEST.EVAL_BACKEND", "MODEL.ALLOW", "MODEL.SPEED", "SOLVER.LOSS_EX")):
            return yacs_option(self.cfg, key)
        node = self.cfg
        for part in key.split("."):
            node = node[part]
        return node

    def _set(self, name, value):
        self.cfg.defrost()
        *parents, leaf = _SETTINGS[name][1].split(".")
        node = self.cfg
        for part in parents:
            node = node[part]
        node[leaf] = value
        self.cfg.freeze()

    def _ddp(self):
        return {"broadcast_buffers": False}  # what DefaultTrainer passes

    def _dataset_names(self, split):
        return list(self.cfg.DATASETS.TRAIN if split == "train" else self.cfg.DATASETS.TEST)

    def dataset_key(self, split):
        return "DATASETS.TRAIN" if split == "train" else "DATASETS.TEST"

    @property
    def num_classes_key(self):
        return "MODEL.ROI_HEADS.NUM_CLASSES"

    def num_classes(self):
        return self.cfg.MODEL.ROI_HEADS.NUM_CLASSES

    def set_num_classes(self, n):
        self.cfg.defrost()
        self.cfg.MODEL.ROI_HEADS.NUM_CLASSES = int(n)
        self.cfg.freeze()

    def roi_heads_class(self):
        name = self.cfg.MODEL.ROI_HEADS.NAME
        return ROI_HEADS_REGISTRY.get(name) if name in ROI_HEADS_REGISTRY else name

    def _build_model(self):
        cfg = self.cfg
        if self.per_stage_eval:
            cfg = cfg.clone()
            cfg.defrost()
            cfg.MODEL.ROI_BOX_CASCADE_HEAD.RETURN_STAGE_DETECTIONS = True
        return build_model(cfg)

    def build_optimizer(self, model):
        return build_optimizer(self.cfg, model)

    def build_lr_scheduler(self, optimizer):
        return build_lr_scheduler(self.cfg, optimizer)

    def build_train_loader(self):
        return build_train_loader(self.cfg)

    def build_train_mapper(self):
        return DatasetMapper(self.cfg, True)

    def test_preprocessing(self):
        input_ = self.cfg.INPUT
        return input_.FORMAT, [T.ResizeShortestEdge([input_.MIN_SIZE_TEST, input_.MIN_SIZE_TEST], input_.MAX_SIZE_TEST)]

    def build_test_loader(self, dataset_name):
        mapper = _NamedErrorsMapper(DatasetMapper(self.cfg, False), f"the test set {dataset_name!r}")
        return build_detection_test_loader(self.cfg, dataset_name, mapper=mapper)

    def _build_evaluator(self, dataset_name, output_dir):
        # COCO metrics for every detection dataset (Detectron2's COCOEvaluator converts a non-COCO one, e.g. VOC).
        return COCOEvaluator(dataset_name, output_dir=output_dir, use_fast_impl=self.eval_backend == "faster-coco-eval")

    def scale_to_world_size(self, world_size):
        scaled = DefaultTrainer.auto_scale_workers(self.cfg, world_size)
        if scaled is not self.cfg:
            self.cfg = scaled
            self.cfg.freeze()

    def dump(self, path):
        with open(path, "w") as f:
            f.write(self.cfg.dump())

    def precise_bn(self):
        precise = self.cfg.TEST.PRECISE_BN
        return (self.eval_period, precise.NUM_ITER) if precise.ENABLED else None


def _accepts(node, argument: str) -> bool:
    """Whether the LazyConfig node's target takes `argument` (e.g. Detectron2's COCOEvaluator takes use_fast_impl)."""
    import inspect

    from detectron2.config.instantiate import locate

    target = node._target_
    target = locate(target) if isinstance(target, str) else target
    try:
        return argument in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


class _NamedErrorsMapper:
    """A dataset mapper whose errors name the sample's file and the dataset split (`what`)."""

    def __init__(self, mapper: Callable, what: str):
        self.mapper, self.what = mapper, what

    def __call__(self, dataset_dict: Dict):
        return mapped_with_file_errors(self.mapper, dataset_dict, self.what)


_MISSING = object()
