"""`CascadeTrainer`: Detectron2's `DefaultTrainer` for yacs configs and LazyConfig files alike.

Everything that differs between the two config styles is in `RunConfig`; the trainer reads straight through.
What it adds to `DefaultTrainer`: safe and atomic checkpoints (`SafeDetectionCheckpointer`), an exact `--resume`
(`SeedEachIteration` and the resumable training loader), a stop on divergence before a diverged step is applied
(`GuardedSimpleTrainer`), checks of what a checkpoint actually loaded, and evaluation outputs that never replace an
earlier evaluation's (`inference/iter_<N>/`, `inference/eval_<N>/`).
"""

import logging
import os
import re
import weakref
from collections import OrderedDict
from typing import Dict, Optional

from detectron2.engine import DefaultTrainer, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..checkpoint import SafeDetectionCheckpointer, run_checkpoints
from ..evaluation import write_eval_metrics
from .determinism import SeedEachIteration
from .divergence import GuardedAMPTrainer, GuardedSimpleTrainer
from .load_checks import check_load_report
from .run_config import RunConfig

__all__ = ["CascadeTrainer"]

logger = logging.getLogger("cascade_det")


class CascadeTrainer(DefaultTrainer):
    """
    Trains and evaluates a model described by a yacs `CfgNode` (with `add_cascade_config` applied), a LazyConfig
    (`model`, `dataloader.{train,test,evaluator}`, `optimizer`, `lr_multiplier`, `train`), or the `RunConfig` that
    `cascade_det.engine.setup` returns. Writes checkpoints, `metrics.json` and TensorBoard events to the output dir.

    `DefaultTrainer.__init__` is not called: it reads yacs keys (SOLVER.*, OUTPUT_DIR). This one builds the same
    objects in the same order from the `RunConfig`.
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        self.run = run = RunConfig.of(cfg, comm.get_world_size())
        model = run.build_model()
        optimizer = run.build_optimizer(model)
        data_loader = run.build_train_loader()
        if hasattr(data_loader, "seed"):
            data_loader.seed = run.seed
        model = create_ddp_model(model, **run.ddp)
        self._trainer = (GuardedAMPTrainer if run.amp else GuardedSimpleTrainer)(model, data_loader, optimizer)
        self._trainer.setup_guard(run.loss_explosion_factor, self._restart_hint)
        self.scheduler = self.build_lr_scheduler(run, optimizer)
        self.checkpointer = SafeDetectionCheckpointer(
            model, run.output_dir, allow_unsafe_pickle=run.allow_unsafe_pickle, trainer=weakref.proxy(self)
        )
        if hasattr(data_loader, "state_dict"):
            self.checkpointer.checkpointables["data_loader"] = data_loader
        else:
            logger.warning(
                "The training loader (%s) cannot save its position: --resume will continue with a new "
                "data order (cascade_det.data.build_train_loader resumes exactly)",
                type(data_loader),
            )
        self.data_loader = data_loader
        self.start_iter = 0
        self.max_iter = run.max_iter
        self.cfg = run.cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume: bool = True):
        """Resume from the newest intact checkpoint of the output dir (`resume=True` and one exists), else
        initialise from the configured weights, checking what they loaded (`check_load_report`)."""
        self.checkpointer.resume_or_load(self.run.weights, resume=resume)
        if self.checkpointer.resumed_from:
            self.start_iter = self.iter + 1
            logger.info("Resuming at iteration %d", self.start_iter)
        elif self.run.weights:
            check_load_report(self.checkpointer.last_load_report, self.run, self.run.weights, eval_only=False)

    def state_dict(self):
        """The trainer's state in a checkpoint: iteration, hooks, and the inner trainer's (optimizer, AMP scaler,
        loss history). Detectron2 0.6 leaves the optimizer out, so its resumed runs restart momentum; main saves it."""
        return {**super().state_dict(), "_trainer": self._trainer.state_dict()}

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._trainer.load_state_dict(state_dict["_trainer"])

    def build_hooks(self):
        run = self.run
        precise_bn = run.precise_bn()
        return [
            hooks.IterationTimer(),
            SeedEachIteration(run.seed, self.data_loader),
            hooks.LRScheduler(),
            hooks.PreciseBN(precise_bn[0], self.model, run.build_train_loader(), precise_bn[1])
            if precise_bn and hooks.get_bn_modules(self.model)
            else None,
            hooks.PeriodicCheckpointer(self.checkpointer, run.checkpoint_period, max_to_keep=run.max_to_keep)
            if comm.is_main_process()
            else None,
            hooks.EvalHook(run.eval_period, self._evaluate),
            hooks.PeriodicWriter(self.build_writers(), period=run.log_period) if comm.is_main_process() else None,
        ]

    def build_writers(self):
        from detectron2.engine import default_writers

        return default_writers(self.run.output_dir, self.max_iter)

    def _evaluate(self):
        """Evaluate the current model into `inference/iter_<N>/`, N the iteration of its checkpoint."""
        iteration = min(self.iter, self.max_iter - 1)
        folder = os.path.join(self.run.output_dir, "inference", f"iter_{iteration:07d}")
        self._last_eval_results = self.test(self.run, self.model, output_dir=folder)
        return self._last_eval_results

    def train(self):
        """Run training; returns the last evaluation's results (None if it never evaluated)."""
        TrainerBase.train(self, self.start_iter, self.max_iter)
        return getattr(self, "_last_eval_results", None)

    def _restart_hint(self, iteration: int) -> str:
        """Where to restart from when the loss of `iteration` diverged: its weights came from step iteration - 1,
        so the newest checkpoint written before that step."""
        earlier = [
            p
            for p in run_checkpoints(self.run.output_dir)
            if (m := re.search(r"model_(\d+)\.pth$", p)) and int(m.group(1)) < iteration - 1
        ]
        if not earlier:
            return (
                f"No checkpoint was written before the divergence began: start a new run with a lower learning "
                f"rate (or {self.run.key('weights')}=... from a good checkpoint)."
            )
        return (
            f"The newest checkpoint before the divergence began is {earlier[0]}: start a new run from it "
            f"({self.run.key('weights')}={earlier[0]}) with a lower learning rate."
        )

    # ---- DefaultTrainer's builders, for either config style (or a RunConfig) ----
    @classmethod
    def build_model(cls, cfg):
        return RunConfig.of(cfg).build_model()

    @classmethod
    def build_optimizer(cls, cfg, model):
        return RunConfig.of(cfg).build_optimizer(model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return RunConfig.of(cfg).build_lr_scheduler(optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        return RunConfig.of(cfg).build_train_loader()

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return RunConfig.of(cfg).build_test_loader(dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        run = RunConfig.of(cfg)
        return run.build_evaluator(dataset_name, output_folder or os.path.join(run.output_dir, "inference"))

    @classmethod
    def test(cls, cfg, model, evaluators=None, output_dir: Optional[str] = None) -> Dict:
        """Evaluate `model` on each test dataset separately, writing into `output_dir` (default
        `<output dir>/inference`; one sub-folder per dataset when there are several). Returns {task: {metric:
        value}}, or {dataset: {task: {metric: value}}} for several datasets, as Detectron2 does."""
        run = RunConfig.of(cfg)
        output_dir = output_dir or os.path.join(run.output_dir, "inference")
        results = OrderedDict()
        for i, name in enumerate(run.test_datasets):
            folder = output_dir if len(run.test_datasets) == 1 else os.path.join(output_dir, name)
            evaluator = evaluators[i] if evaluators is not None else run.build_evaluator(name, folder)
            results[name] = inference_on_dataset(model, run.build_test_loader(name), evaluator)
            if comm.is_main_process():
                logger.info("Evaluation results for %s in csv format:", name)
                print_csv_format(results[name])
        return next(iter(results.values())) if len(results) == 1 else results

    @classmethod
    def evaluate_checkpoint(cls, run: RunConfig, resume: bool = False) -> Dict:
        """--eval-only: the configured weights (or with `resume`, the output dir's newest checkpoint), checked
        (`check_load_report`), evaluated into `run.eval_dir`; the metrics are appended to metrics.json."""
        model = run.build_model()
        checkpointer = SafeDetectionCheckpointer(
            model, save_dir=run.output_dir, allow_unsafe_pickle=run.allow_unsafe_pickle
        )
        checkpoint = checkpointer.resume_or_load(run.weights, resume=resume)
        source = checkpointer.loaded_from or run.weights
        check_load_report(checkpointer.last_load_report, run, source, eval_only=True)
        results = cls.test(run, model, output_dir=run.eval_dir)
        if comm.is_main_process():
            path = write_eval_metrics(run.output_dir, results, checkpoint.get("iteration", 0))
            logger.info("Evaluation of %s written to %s; metrics appended to %s", source, run.eval_dir, path)
        return results
