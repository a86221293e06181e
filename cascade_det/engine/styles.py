"""The two config styles' builders: `LAZY` (LazyConfig files, objects described for `instantiate`) and `YACS`
(Detectron2 `CfgNode`s, built by Detectron2's own builders). Everything that differs between the styles is here,
as two small sets of the same functions; `cascade_det.engine.Run` picks one and reads straight through.

Every function takes the run's own config (a copy `Run` made) and leaves it as it is: a value that must change is
set on a further copy (`with_values`), a node that must be filled in (the optimizer's model, a test loader's dataset)
is filled in on a copy of that node.
"""

import copy
import inspect
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

import detectron2.data.transforms as T
from detectron2.config import CfgNode, LazyConfig, instantiate
from detectron2.config.instantiate import locate
from detectron2.data import DatasetMapper, build_detection_test_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator
from detectron2.modeling import build_model
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY
from detectron2.solver import LRMultiplier, build_lr_scheduler, build_optimizer

from ..config import CASCADE_HEAD, Option, get_dotted, run_options, set_dotted
from ..config import option as option_of
from ..data import SampleReadError, build_train_loader, mapped_with_file_errors

__all__ = ["LAZY", "MISSING", "YACS", "style_of"]

MISSING = object()  # what `read` returns for a key the config does not have

logger = logging.getLogger("cascade_det")
_SKIP_TEST = run_options()["skip_unreadable_test_images"]
_SKIP_TEST_HINT = f"{_SKIP_TEST.lazy}=True (LazyConfig) or {_SKIP_TEST.yacs} True (yacs) to evaluate it as blank"


class _NamedErrorsMapper:
    """A test-set mapper whose errors name the sample's file and the dataset split (`what`); with `skip_unreadable`,
    an image that cannot be read is evaluated as an image without detections (a blank input at its size; logged and
    counted: its objects count as missed) instead of stopping the evaluation."""

    def __init__(self, mapper: Callable, what: str, skip_unreadable: bool = False):
        self.mapper, self.what, self.skip_unreadable = mapper, what, skip_unreadable
        self.skipped = 0

    def __call__(self, dataset_dict: Dict):
        try:
            return mapped_with_file_errors(self.mapper, dataset_dict, self.what)
        except SampleReadError as e:
            if not self.skip_unreadable:
                raise SampleReadError(f"{e}. Fix or remove it, or set {_SKIP_TEST_HINT}.") from e.__cause__
            self.skipped += 1
            logger.warning("Evaluating an unreadable test image as blank (%d so far): %s", self.skipped, e)
            blank = {k: v for k, v in dataset_dict.items() if k != "annotations"}
            blank["image"] = torch.zeros((3, 32, 32), dtype=torch.uint8)  # no object to find; rescaled to its size
            blank.setdefault("height", 32)
            blank.setdefault("width", 32)
            return blank


def _takes(target, argument: str) -> bool:
    """Whether the class or function `target` (or its dotted name) takes the keyword `argument`."""
    target = locate(target) if isinstance(target, str) else target
    try:
        return argument in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def _mapper_augmentations(mapper) -> List[T.Augmentation]:
    """A built dataset mapper's augmentations (Detectron2's `DatasetMapper` keeps an `AugmentationList`)."""
    augmentations = getattr(mapper, "augmentations", None)
    return list(getattr(augmentations, "augs", augmentations or []))


class _Lazy:
    """LazyConfig: `model`, `dataloader.{train,test,evaluator}`, `optimizer`, `lr_multiplier`, `train`."""

    name = "lazy"
    # Where the square a backbone pads to and the resizes are (for messages of engine/input_checks.py).
    square_key = "model.backbone.square_pad"
    resize_keys = {"train": "dataloader.train.mapper.augmentations", "test": "dataloader.test.mapper.augmentations"}

    @staticmethod
    def copy(cfg: DictConfig) -> DictConfig:
        return copy.deepcopy(cfg)

    @staticmethod
    def key(option: Option) -> str:
        return option.lazy

    @staticmethod
    def read(cfg: DictConfig, option: Option) -> Any:
        value = OmegaConf.select(cfg, option.lazy, default=MISSING)
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value

    @staticmethod
    def with_values(cfg: DictConfig, values: Dict[Option, Any]) -> DictConfig:
        cfg = copy.deepcopy(cfg)
        for option, value in values.items():
            OmegaConf.update(cfg, option.lazy, value, merge=False)
        return cfg

    @staticmethod
    def scaled(cfg: DictConfig, options: Dict[str, Option], settings, world_size: int) -> DictConfig:
        """LazyConfig counterpart of Detectron2's `DefaultTrainer.auto_scale_workers` (yacs): a config written for
        `train.reference_world_size` processes keeps the images per process on `world_size`: total batch size and
        lr scale by world/reference, max_iter and the eval and checkpoint periods by reference/world (the lr
        schedule is in fractions of max_iter). The reference becomes `world_size`: the copy describes this run.
        `settings` are the config's checked values (`RunSettings`)."""
        scale = world_size / settings.reference_world_size
        values = {
            options["total_batch_size"]: int(settings.total_batch_size * scale),
            options["base_lr"]: settings.base_lr * scale,
            options["reference_world_size"]: world_size,
        }
        for name in ("max_iter", "eval_period", "checkpoint_period"):
            values[options[name]] = int(round(getattr(settings, name) / scale))
        return _Lazy.with_values(cfg, values)

    @staticmethod
    def derived(cfg: DictConfig) -> Dict[str, Any]:
        ddp = OmegaConf.select(cfg, "train.ddp", default=None)
        return {
            "ddp": OmegaConf.to_container(ddp, resolve=True) if ddp is not None else {"broadcast_buffers": False},
            "precise_bn": None,
        }

    @staticmethod
    def roi_heads_class(cfg: DictConfig):
        target = OmegaConf.select(cfg, "model.roi_heads._target_", default=None)
        return locate(target) if isinstance(target, str) else target

    @staticmethod
    def build_model(cfg: DictConfig, device: str, stage_detections: bool) -> torch.nn.Module:
        model = copy.deepcopy(cfg.model)
        if stage_detections:
            model.roi_heads.return_stage_detections = True
        return instantiate(model).to(device)

    @staticmethod
    def build_optimizer(cfg: DictConfig, model: torch.nn.Module):
        optimizer = copy.deepcopy(cfg.optimizer)
        optimizer.params.model = model
        return instantiate(optimizer)

    @staticmethod
    def build_lr_scheduler(cfg: DictConfig, optimizer, max_iter: int):
        return LRMultiplier(optimizer, instantiate(cfg.lr_multiplier), max_iter)

    @staticmethod
    def build_train_loader(cfg: DictConfig):
        return instantiate(cfg.dataloader.train)

    @staticmethod
    def build_train_mapper(cfg: DictConfig):
        return instantiate(cfg.dataloader.train.mapper)

    @staticmethod
    def train_augmentations(cfg: DictConfig) -> List[T.Augmentation]:
        mapper = OmegaConf.select(cfg, "dataloader.train.mapper", default=None)
        if mapper is None:  # a config for inference alone
            return []
        return _mapper_augmentations(_Lazy.build_train_mapper(cfg))

    @staticmethod
    def build_test_loader(cfg: DictConfig, dataset_name: str, skip_unreadable: bool = False):
        loader = copy.deepcopy(cfg.dataloader.test)
        loader.dataset.names = dataset_name
        what = f"the test set {dataset_name!r}"
        loader.mapper = _NamedErrorsMapper(instantiate(loader.mapper), what, skip_unreadable)
        return instantiate(loader)

    @staticmethod
    def test_preprocessing(cfg: DictConfig) -> Tuple[str, List[T.Augmentation]]:
        mapper = OmegaConf.select(cfg, "dataloader.test.mapper", default=None)
        augmentations = [instantiate(a) for a in mapper.augmentations] if mapper is not None else []
        return str(cfg.model.get("input_format", "BGR")), augmentations

    @staticmethod
    def build_evaluator(cfg: DictConfig, dataset_name: str, output_dir: str, fast: bool):
        evaluator = copy.deepcopy(cfg.dataloader.evaluator)
        evaluator.dataset_name = dataset_name
        evaluator.output_dir = output_dir
        if _takes(evaluator._target_, "use_fast_impl"):
            evaluator.use_fast_impl = fast
        return instantiate(evaluator)

    @staticmethod
    def dump(cfg: DictConfig, path: str) -> None:
        LazyConfig.save(cfg, path)


class _Yacs:
    """A Detectron2 `CfgNode` (with or without `add_cascade_config`), built through Detectron2's own builders."""

    name = "yacs"
    square_key = "MODEL.VIT.IMG_SIZE"
    resize_keys = {"train": "INPUT.MAX_SIZE_TRAIN", "test": "INPUT.MAX_SIZE_TEST"}

    @staticmethod
    def copy(cfg: CfgNode) -> CfgNode:
        cfg = cfg.clone()
        cfg.freeze()
        return cfg

    @staticmethod
    def key(option: Option) -> str:
        return option.yacs or f"(no yacs key; always {option.default})"

    @staticmethod
    def read(cfg: CfgNode, option: Option) -> Any:
        if option.yacs is None:
            return option.default
        # Our keys read as their default where add_cascade_config was not applied; Detectron2's must be there.
        return get_dotted(cfg, option.yacs, MISSING if option.detectron2 else option.default)

    @staticmethod
    def with_values(cfg: CfgNode, values: Dict[Option, Any]) -> CfgNode:
        cfg = cfg.clone()
        cfg.defrost()
        for option, value in values.items():
            set_dotted(cfg, option.yacs, value)
        cfg.freeze()
        return cfg

    @staticmethod
    def scaled(cfg: CfgNode, options: Dict[str, Option], settings, world_size: int) -> CfgNode:
        scaled = DefaultTrainer.auto_scale_workers(cfg, world_size)  # a scaled copy (Detectron2's own rule)
        scaled.freeze()
        return scaled

    @staticmethod
    def derived(cfg: CfgNode) -> Dict[str, Any]:
        precise = cfg.TEST.PRECISE_BN
        return {
            "ddp": {"broadcast_buffers": False},  # what DefaultTrainer passes
            "precise_bn": (cfg.TEST.EVAL_PERIOD, precise.NUM_ITER) if precise.ENABLED else None,
        }

    @staticmethod
    def roi_heads_class(cfg: CfgNode):
        name = cfg.MODEL.ROI_HEADS.NAME
        return ROI_HEADS_REGISTRY.get(name) if name in ROI_HEADS_REGISTRY else name

    @staticmethod
    def build_model(cfg: CfgNode, device: str, stage_detections: bool) -> torch.nn.Module:
        if stage_detections:
            cfg = _Yacs.with_values(cfg, {option_of(f"{CASCADE_HEAD}.RETURN_STAGE_DETECTIONS"): True})
        return build_model(cfg)  # on cfg.MODEL.DEVICE, which is `device`

    @staticmethod
    def build_optimizer(cfg: CfgNode, model: torch.nn.Module):
        return build_optimizer(cfg, model)

    @staticmethod
    def build_lr_scheduler(cfg: CfgNode, optimizer, max_iter: int):
        return build_lr_scheduler(cfg, optimizer)

    @staticmethod
    def build_train_loader(cfg: CfgNode):
        return build_train_loader(cfg)

    @staticmethod
    def build_train_mapper(cfg: CfgNode):
        return DatasetMapper(cfg, True)

    @staticmethod
    def train_augmentations(cfg: CfgNode) -> List[T.Augmentation]:
        return _mapper_augmentations(_Yacs.build_train_mapper(cfg))

    @staticmethod
    def build_test_loader(cfg: CfgNode, dataset_name: str, skip_unreadable: bool = False):
        mapper = _NamedErrorsMapper(DatasetMapper(cfg, False), f"the test set {dataset_name!r}", skip_unreadable)
        return build_detection_test_loader(cfg, dataset_name, mapper=mapper)

    @staticmethod
    def test_preprocessing(cfg: CfgNode) -> Tuple[str, List[T.Augmentation]]:
        size = cfg.INPUT
        return size.FORMAT, [T.ResizeShortestEdge([size.MIN_SIZE_TEST, size.MIN_SIZE_TEST], size.MAX_SIZE_TEST)]

    @staticmethod
    def build_evaluator(cfg: CfgNode, dataset_name: str, output_dir: str, fast: bool):
        # COCO metrics for every detection dataset (Detectron2's COCOEvaluator converts a non-COCO one, e.g. VOC).
        return COCOEvaluator(dataset_name, output_dir=output_dir, use_fast_impl=fast)

    @staticmethod
    def dump(cfg: CfgNode, path: str) -> None:
        with open(path, "w") as f:
            f.write(cfg.dump())


LAZY, YACS = _Lazy, _Yacs


def style_of(cfg) -> Optional[type]:
    """LAZY for a LazyConfig (DictConfig), YACS for a yacs CfgNode, None for anything else."""
    if isinstance(cfg, DictConfig):
        return LAZY
    if isinstance(cfg, CfgNode):
        return YACS
    return None
