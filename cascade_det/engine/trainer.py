"""`CascadeTrainer`: Detectron2's `DefaultTrainer` for both yacs configs and LazyConfig files.

`DefaultTrainer` reads yacs keys directly (`cfg.SOLVER.MAX_ITER`, `cfg.OUTPUT_DIR`, ...). This subclass reads
the run settings once, from either config style, into `RunSettings`, and builds model, optimizer, scheduler,
loaders, hooks and evaluators from the config's own style: yacs through Detectron2's builders, LazyConfig
through `instantiate` (as Detectron2's `lazyconfig_train_net.py` does).
"""
import logging
import os
import weakref
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from detectron2.config import CfgNode, instantiate
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import COCOEvaluator, DatasetEvaluators, inference_on_dataset, print_csv_format
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils import comm
from detectron2.utils.events import EventStorage, JSONWriter
from detectron2.utils.logger import setup_logger

from ..checkpoint import SafeDetectionCheckpointer, missing_weights_advice
from ..data import check_dataset_files
from ..evaluation import PerStageCOCOEvaluator
from ..modeling.speed import optimize_for_speed

__all__ = ["CascadeTrainer", "RunSettings", "scale_to_world_size", "write_eval_metrics"]

logger = logging.getLogger("cascade_det")


def is_lazy(cfg) -> bool:
    return isinstance(cfg, DictConfig)


def _names(value) -> List[str]:
    return [value] if isinstance(value, str) else list(value)


@dataclass
class RunSettings:
    """What the trainer needs to know of a run, whichever config style described it."""

    output_dir: str
    max_iter: int
    weights: str  # checkpoint to initialise from ("" for none)
    amp: bool
    checkpoint_period: int
    max_to_keep: Optional[int]
    eval_period: int
    log_period: int
    train_datasets: List[str]
    test_datasets: List[str]
    ddp: Dict = field(default_factory=dict)
    per_stage_eval: bool = False  # add PerStageCOCOEvaluator to every evaluation
    allow_unsafe_pickle: bool = False  # load checkpoints with arbitrary unpickling (trusted files only)
    lazy: bool = False

    @property
    def weights_key(self) -> str:
        return "train.init_checkpoint" if self.lazy else "MODEL.WEIGHTS"

    def check_weights(self) -> None:
        """A local weights file that does not exist is an error naming the key (fvcore would only assert)."""
        if self.weights and "://" not in self.weights and not os.path.isfile(self.weights):
            raise FileNotFoundError(f"{self.weights_key}={missing_weights_advice(self.weights)}")

    @classmethod
    def from_config(cls, cfg) -> "RunSettings":
        if is_lazy(cfg):
            train = cfg.train
            return cls(
                output_dir=train.output_dir,
                max_iter=train.max_iter,
                weights=train.init_checkpoint or "",
                amp=train.amp.enabled,
                checkpoint_period=train.checkpointer.period,
                max_to_keep=train.checkpointer.get("max_to_keep"),
                eval_period=train.eval_period,
                log_period=train.log_period,
                train_datasets=_names(cfg.dataloader.train.dataset.names),
                test_datasets=_names(cfg.dataloader.test.dataset.names),
                ddp=OmegaConf.to_container(train.ddp, resolve=True),
                per_stage_eval=bool(train.get("per_stage_eval", False)),
                allow_unsafe_pickle=bool(train.get("allow_unsafe_pickle", False)),
                lazy=True,
            )
        return cls(
            output_dir=cfg.OUTPUT_DIR,
            max_iter=cfg.SOLVER.MAX_ITER,
            weights=cfg.MODEL.WEIGHTS,
            amp=cfg.SOLVER.AMP.ENABLED,
            checkpoint_period=cfg.SOLVER.CHECKPOINT_PERIOD,
            max_to_keep=None,
            eval_period=cfg.TEST.EVAL_PERIOD,
            log_period=20,
            train_datasets=list(cfg.DATASETS.TRAIN),
            test_datasets=list(cfg.DATASETS.TEST),
            ddp={"broadcast_buffers": False},
            per_stage_eval=bool(cfg.TEST.get("PER_STAGE_EVAL", False)),
            allow_unsafe_pickle=bool(cfg.MODEL.get("ALLOW_UNSAFE_PICKLE", False)),
        )


def scale_to_world_size(cfg, world_size: int) -> None:
    """LazyConfig counterpart of Detectron2's yacs `SOLVER.REFERENCE_WORLD_SIZE` rule, in place.

    A config written for `train.reference_world_size` processes (e.g. 8 GPUs), run on `world_size` processes,
    keeps the images per process: the total batch size and the learning rate scale by world/reference, and the
    iteration counts (max_iter, eval and checkpoint periods) by reference/world, so the run sees the same number
    of epochs with the same schedule (the lr schedule is expressed in fractions of max_iter). 0 disables it."""
    reference = cfg.train.get("reference_world_size", 0)
    if not reference or reference == world_size:
        return
    scale = world_size / reference
    batch = cfg.dataloader.train.total_batch_size * scale
    if batch != int(batch) or batch < 1:
        raise ValueError(
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
        world_size, reference, cfg.dataloader.train.total_batch_size, cfg.optimizer.lr, cfg.train.max_iter,
    )


class CascadeTrainer(DefaultTrainer):
    """
    Trains and evaluates a model described by a yacs `CfgNode` (with `add_cascade_config` applied) or a
    LazyConfig (`model`, `dataloader.{train,test,evaluator}`, `optimizer`, `lr_multiplier`, `train`).
    Writes checkpoints, `metrics.json` and TensorBoard events to the output dir.
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        if is_lazy(cfg):
            scale_to_world_size(cfg, comm.get_world_size())
        else:
            cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        self.settings = settings = RunSettings.from_config(cfg)
        check_dataset_files(settings.train_datasets)
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, **settings.ddp)
        self._trainer = (AMPTrainer if settings.amp else SimpleTrainer)(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = SafeDetectionCheckpointer(
            model, settings.output_dir, allow_unsafe_pickle=settings.allow_unsafe_pickle, trainer=weakref.proxy(self)
        )
        self.start_iter = 0
        self.max_iter = settings.max_iter
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume: bool = True):
        """Resume from the output dir's last checkpoint (`resume=True`), else load `settings.weights`.

        A new run refuses an output dir that already holds a run's checkpoints: starting over would overwrite
        them (`model_final.pth`, `last_checkpoint`) silently."""
        if not resume and self.checkpointer.has_checkpoint():
            raise FileExistsError(
                f"{self.settings.output_dir} already holds a training run "
                f"(last checkpoint: {self.checkpointer.get_checkpoint_file()}). Pass --resume to continue it, "
                "or set another output dir (train.output_dir=... / OUTPUT_DIR ...)."
            )
        if not (resume and self.checkpointer.has_checkpoint()):
            self.settings.check_weights()
        self.checkpointer.resume_or_load(self.settings.weights, resume=resume)
        if resume and self.checkpointer.has_checkpoint():
            self.start_iter = self.iter + 1

    def build_hooks(self):
        settings = self.settings
        if not is_lazy(self.cfg):
            ret = super().build_hooks()  # PreciseBN and the rest, as Detectron2 configures them from yacs
        else:
            ret = [
                hooks.IterationTimer(),
                hooks.LRScheduler(scheduler=self.scheduler),
                hooks.PeriodicCheckpointer(
                    self.checkpointer, settings.checkpoint_period, max_to_keep=settings.max_to_keep
                )
                if comm.is_main_process()
                else None,
                hooks.EvalHook(settings.eval_period, self._test_and_keep_results),
                hooks.PeriodicWriter(self.build_writers(), period=settings.log_period)
                if comm.is_main_process()
                else None,
            ]
        return [h for h in ret if h is not None]

    def _test_and_keep_results(self):
        self._last_eval_results = self.test(self.cfg, self.model)
        return self._last_eval_results

    def train(self):
        """Run training; returns the last evaluation's results (None if it never evaluated)."""
        if not is_lazy(self.cfg):
            super().train()
        else:
            TrainerBase.train(self, self.start_iter, self.max_iter)
        return getattr(self, "_last_eval_results", None)

    def build_writers(self):
        return default_writers(self.settings.output_dir, self.max_iter)

    @classmethod
    def build_model(cls, cfg):
        if is_lazy(cfg):
            model = instantiate(cfg.model)
            model.to(cfg.train.device)
            logger.info("Model:\n%s", model)
            speed = cfg.train.get("speed", {})
            fold, channels_last = speed.get("fold_frozen_bn", False), speed.get("channels_last_inference", False)
        else:
            model = super().build_model(cfg)
            speed = cfg.MODEL.get("SPEED", {})
            fold, channels_last = speed.get("FOLD_FROZEN_BN", False), speed.get("CHANNELS_LAST_INFERENCE", False)
        return optimize_for_speed(model, fold_frozen_bn=fold, channels_last_inference=channels_last)

    @classmethod
    def build_optimizer(cls, cfg, model):
        if not is_lazy(cfg):
            return super().build_optimizer(cfg, model)
        cfg.optimizer.params.model = model
        try:
            return instantiate(cfg.optimizer)
        finally:
            cfg.optimizer.params.model = None  # keep the config free of the model object (it is saved later)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        if not is_lazy(cfg):
            return super().build_lr_scheduler(cfg, optimizer)
        from detectron2.solver import LRMultiplier

        return LRMultiplier(optimizer, instantiate(cfg.lr_multiplier), cfg.train.max_iter)

    @classmethod
    def build_train_loader(cls, cfg):
        if not is_lazy(cfg):
            return super().build_train_loader(cfg)
        return instantiate(cfg.dataloader.train)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        """COCO metrics (box, and mask when the model predicts masks) for a yacs config's test dataset."""
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
        return COCOEvaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """Evaluate on the test dataset(s): {task: {metric: value}} (yacs with several test datasets: keyed by
        dataset first, as Detectron2 returns them)."""
        settings = RunSettings.from_config(cfg)
        check_dataset_files(settings.test_datasets)
        inference_dir = os.path.join(settings.output_dir, "inference")
        if not is_lazy(cfg):
            if evaluators is None and settings.per_stage_eval:
                evaluators = [
                    DatasetEvaluators([cls.build_evaluator(cfg, name), PerStageCOCOEvaluator(name, model, inference_dir)])
                    for name in settings.test_datasets
                ]
            return super().test(cfg, model, evaluators)
        evaluator_cfg = cfg.dataloader.evaluator
        if evaluator_cfg.get("output_dir") is None:
            evaluator_cfg.output_dir = inference_dir
        evaluator = evaluators if evaluators is not None else instantiate(evaluator_cfg)
        name = ",".join(settings.test_datasets)
        if evaluators is None and settings.per_stage_eval:
            evaluator = [evaluator, PerStageCOCOEvaluator(name, model, inference_dir)]
        if isinstance(evaluator, (list, tuple)):
            evaluator = DatasetEvaluators(evaluator)
        results = inference_on_dataset(model, instantiate(cfg.dataloader.test), evaluator)
        if comm.is_main_process():
            logger.info("Evaluation results for %s in csv format:", name)
            print_csv_format(results)
        return results


def write_eval_metrics(output_dir: str, results: Dict, iteration: int) -> str:
    """Append evaluation results to `output_dir/metrics.json` as one JSON line, in the format training's
    JSONWriter uses (flattened "bbox/AP" keys), so --eval-only runs leave their numbers where training does."""
    path = os.path.join(output_dir, "metrics.json")
    with EventStorage(iteration) as storage:
        storage.put_scalars(**flatten_results_dict(results), smoothing_hint=False)
        writer = JSONWriter(path)
        writer.write()
        writer.close()
    return path
