"""`CascadeTrainer`: Detectron2's `DefaultTrainer` for yacs configs and LazyConfig files alike.

Everything that differs between the two config styles is in `Run` (and its builders, `styles`); the trainer reads
straight through.
What it adds to `DefaultTrainer`: safe and atomic checkpoints (`SafeDetectionCheckpointer`), an exact `--resume`
(`SeedEachIteration` and the resumable training loader), a stop on divergence before a diverged step is applied
(`GuardedSimpleTrainer`), checks of what a checkpoint actually loaded, and evaluation outputs that never replace an
earlier evaluation's (`inference/iter_<N>/`, `inference/eval_<N>/`).
"""

import json
import logging
import os
import re
import weakref
from collections import OrderedDict
from typing import Dict, Optional

from detectron2.engine import DefaultTrainer, default_writers, hooks
from detectron2.engine.defaults import create_ddp_model
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset, print_csv_format
from detectron2.utils import comm
from detectron2.utils.events import JSONWriter
from detectron2.utils.logger import setup_logger

from ..checkpoint import SafeDetectionCheckpointer, run_checkpoints
from ..evaluation import write_eval_metrics
from ..evaluation.drawing import DrawPredictions
from ..evaluation.metrics import strict_json_lines
from ..outputs import next_free_path
from ..weights import atomic_write
from .determinism import SeedEachIteration
from .divergence import GuardedAMPTrainer, GuardedSimpleTrainer
from .load_checks import check_load_report
from .model_metadata import run_model_metadata
from .progress import TrainingProgress, interactive, with_progress
from .resume_checks import apply_resumed_lr, run_state
from .run import Run
from .run_dir import release_output_dir
from .setup import RunPlan

__all__ = ["CascadeTrainer"]

logger = logging.getLogger("cascade_det")


class CascadeTrainer(DefaultTrainer):
    """
    Trains and evaluates a model described by a yacs `CfgNode` (with `add_cascade_config` applied), a LazyConfig
    (`model`, `dataloader.{train,test,evaluator}`, `optimizer`, `lr_multiplier`, `train`), or the `Run` that
    `cascade_det.engine.setup` plans. Writes checkpoints, `metrics.json` and TensorBoard events to the output dir.
    Its classmethods take either config style (or a `Run`) and never change the config they are given.
    """

    def __init__(self, cfg):
        # Mirrors DefaultTrainer.__init__ (0.6 and main), which cannot be called: it reads yacs keys (SOLVER.AMP,
        # OUTPUT_DIR, SOLVER.MAX_ITER) and builds Detectron2's own checkpointer and inner trainers.
        TrainerBase.__init__(self)
        if not logging.getLogger("detectron2").isEnabledFor(logging.INFO):
            setup_logger()
        self.run = run = Run.of(cfg)
        if run is not cfg:  # built here from a user's config: say what building it changed
            for note in run.notes:
                logger.info(note)
        s = run.settings
        model = self.build_model(run)
        optimizer = self.build_optimizer(run, model)
        data_loader = self.build_train_loader(run)
        if hasattr(data_loader, "seed"):
            data_loader.seed = s.seed
        model = create_ddp_model(model, **s.ddp)
        self._trainer = (GuardedAMPTrainer if s.amp else GuardedSimpleTrainer)(model, data_loader, optimizer)
        self._trainer.setup_guard(s.loss_explosion_factor, self._restart_hint)
        self.scheduler = self.build_lr_scheduler(run, optimizer)
        self.checkpointer = SafeDetectionCheckpointer(
            model, s.output_dir, allow_unsafe_pickle=s.allow_unsafe_pickle, trainer=weakref.proxy(self)
        )
        self.checkpointer.model_metadata = run_model_metadata(run)  # a checkpoint alone says what it detects
        self.checkpointer.run_state = run_state(run, optimizer)  # what --resume compares against
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
        self.max_iter = s.max_iter
        self.cfg = run.cfg
        self.register_hooks(self.build_hooks())

    def resume_or_load(self, resume: bool = True):
        """Resume from the newest intact checkpoint of the output dir (`resume=True` and one exists), else
        initialise from the configured weights, checking what they loaded (`check_load_report`)."""
        weights = self.run.settings.weights
        optimizer = self._trainer.optimizer
        configured = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]  # this config's lrs
        self.checkpointer.resume_or_load(weights, resume=resume)
        if self.checkpointer.resumed_from:
            self.start_iter = self.iter + 1
            logger.info("Resuming at iteration %d from %s", self.start_iter, self.checkpointer.resumed_from)
            note = apply_resumed_lr(optimizer, self.scheduler, configured)  # the checkpoint restored its own lr
            if note:
                logger.warning(note)
            if comm.is_main_process():
                _set_aside_replayed_metrics(self.run.settings.output_dir, self.start_iter)
        elif weights:
            check_load_report(self.checkpointer.last_load_report, self.run, weights, eval_only=False)

    def build_hooks(self):
        run, s = self.run, self.run.settings
        return [
            hooks.IterationTimer(),
            SeedEachIteration(s.seed, self.data_loader),
            hooks.LRScheduler(),
            hooks.PreciseBN(s.precise_bn[0], self.model, run.build_train_loader(), s.precise_bn[1])
            if s.precise_bn and hooks.get_bn_modules(self.model)
            else None,
            _PeriodicCheckpointer(self.checkpointer, s.checkpoint_period, max_to_keep=s.max_to_keep)
            if comm.is_main_process()
            else None,
            _EvalHook(s.eval_period, self._evaluate, s.final_eval) if s.eval_period or s.final_eval else None,
            # With test.aug / TEST.AUG: the trained model is also evaluated with TTA, at the end (Detectron2's
            # tools/train_net.py registers the same EvalHook(0, test_with_TTA)).
            _EvalHook(0, self._evaluate_with_tta) if s.tta else None,
            hooks.PeriodicWriter(self.build_writers(), period=s.log_period) if comm.is_main_process() else None,
            TrainingProgress() if interactive() else None,
        ]

    def build_writers(self):
        """Detectron2's writers; metrics.json gets valid JSON lines (NaN and infinity written as null)."""
        return [
            strict_json_lines(w) if isinstance(w, JSONWriter) else w
            for w in default_writers(self.run.settings.output_dir, self.max_iter)
        ]

    def _evaluate(self):
        """Evaluate the current model into `inference/iter_<N>/`, N the iteration of its checkpoint."""
        iteration = min(self.iter, self.max_iter - 1)
        folder = os.path.join(self.run.settings.output_dir, "inference", f"iter_{iteration:07d}")
        self._last_eval_results = self.test(self.run, self.model, output_dir=folder)
        return self._last_eval_results

    def _evaluate_with_tta(self):
        """Evaluate the trained model with test-time augmentation into `inference/iter_<N>_TTA/`."""
        iteration = min(self.iter, self.max_iter - 1)
        folder = os.path.join(self.run.settings.output_dir, "inference", f"iter_{iteration:07d}_TTA")
        tta = self.test_with_TTA(self.run, self.model, output_dir=folder)
        self._last_eval_results = _with_tta_results(getattr(self, "_last_eval_results", None) or {}, tta)
        return tta  # what the hook writes to metrics.json: the TTA results beside the plain ones

    def train(self):
        """Run training; returns the last evaluation's results (None if it never evaluated)."""
        # TrainerBase's loop, as DefaultTrainer.train runs it; that one then reads cfg.TEST.EXPECTED_RESULTS (yacs).
        try:
            TrainerBase.train(self, self.start_iter, self.max_iter)
        finally:
            release_output_dir(self.run.settings.output_dir)  # the lock setup took (a no-op where it took none)
        return getattr(self, "_last_eval_results", None)

    def _restart_hint(self, iteration: int) -> str:
        """Where to restart from when the loss of `iteration` diverged: its weights came from step iteration - 1,
        so the newest checkpoint written before that step."""
        earlier = [
            p
            for p in run_checkpoints(self.run.settings.output_dir)
            if (m := re.search(r"model_(\d+)\.pth$", p)) and int(m.group(1)) < iteration - 1
        ]
        key = self.run.key("weights")
        if not earlier:
            return (
                f"No checkpoint was written before the divergence began: start a new run with a lower learning "
                f"rate (or {key}=... from a good checkpoint)."
            )
        return (
            f"The newest checkpoint before the divergence began is {earlier[0]}: start a new run from it "
            f"({key}={earlier[0]}) with a lower learning rate."
        )

    # ---- DefaultTrainer's builders, for either config style (or a Run); the config given stays as it is ----
    @classmethod
    def build_model(cls, cfg):
        return Run.of(cfg).build_model()

    @classmethod
    def build_optimizer(cls, cfg, model):
        return Run.of(cfg).build_optimizer(model)

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        return Run.of(cfg).build_lr_scheduler(optimizer)

    @classmethod
    def build_train_loader(cls, cfg):
        return Run.of(cfg).build_train_loader()

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return Run.of(cfg).build_test_loader(dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        run = Run.of(cfg)
        return run.build_evaluator(dataset_name, output_folder or os.path.join(run.settings.output_dir, "inference"))

    @classmethod
    def test(cls, cfg, model, evaluators=None, output_dir: Optional[str] = None) -> Dict:
        """Evaluate `model` on each test dataset separately, writing into `output_dir` (default
        `<output dir>/inference`; one sub-folder per dataset when there are several). Returns {task: {metric:
        value}}, or {dataset: {task: {metric: value}}} for several datasets, as Detectron2 does."""
        run = Run.of(cfg)
        names = run.settings.test_datasets
        output_dir = output_dir or os.path.join(run.settings.output_dir, "inference")
        results = OrderedDict()
        for i, name in enumerate(names):
            folder = _dataset_folder(output_dir, name, names)
            loader = cls.build_test_loader(run, name)  # first, as DefaultTrainer.test: it may prepare the data
            evaluator = evaluators[i] if evaluators is not None else cls.build_evaluator(run, name, folder)
            results[name] = inference_on_dataset(model, with_progress(loader, f"inference on {name}"), evaluator)
            if comm.is_main_process():
                logger.info("Evaluation results for %s in csv format:", name)
                print_csv_format(results[name])
        return next(iter(results.values())) if len(results) == 1 else results

    @classmethod
    def test_with_TTA(cls, cfg, model, output_dir: Optional[str] = None) -> Dict:
        """`test` of `model` under test-time augmentation (`test.aug` / `TEST.AUG`: sizes, flip), as Detectron2's
        tools/train_net.py does it: results under "<task>_TTA" (per-stage ones too), written into `output_dir`
        (default `<output dir>/inference_TTA`)."""
        run = Run.of(cfg)
        logger.info("Running inference with test-time augmentation ...")
        output_dir = output_dir or os.path.join(run.settings.output_dir, "inference_TTA")
        results = cls.test(run, run.with_tta(model), output_dir=output_dir)
        if len(run.settings.test_datasets) > 1:
            return {name: {f"{k}_TTA": v for k, v in r.items()} for name, r in results.items()}
        return {f"{k}_TTA": v for k, v in results.items()}

    @classmethod
    def evaluate_checkpoint(cls, plan: RunPlan) -> Dict:
        """--eval-only: the configured weights (or with --resume, the output dir's newest checkpoint), checked
        (`check_load_report`), evaluated into `plan.eval_dir`; the metrics are appended to metrics.json."""
        run, s = plan.run, plan.run.settings
        model = cls.build_model(run)
        checkpointer = SafeDetectionCheckpointer(
            model, save_dir=s.output_dir, allow_unsafe_pickle=s.allow_unsafe_pickle
        )
        checkpoint = checkpointer.resume_or_load(s.weights, resume=plan.resume)
        source = checkpointer.loaded_from or s.weights
        check_load_report(checkpointer.last_load_report, run, source, eval_only=True)
        evaluators = None
        if plan.show_dir:  # drawn in the same pass as the evaluation, one folder per dataset where there are several
            names = s.test_datasets
            evaluators = [
                DatasetEvaluators(
                    [
                        cls.build_evaluator(run, name, _dataset_folder(plan.eval_dir, name, names)),
                        DrawPredictions(name, _dataset_folder(plan.show_dir, name, names), plan.show_score_threshold),
                    ]
                )
                for name in names
            ]
        results = cls.test(run, model, evaluators, output_dir=plan.eval_dir)
        if plan.show_dir:
            logger.info("Predictions drawn into %s", plan.show_dir)
        if s.tta:
            tta = cls.test_with_TTA(run, model, output_dir=os.path.join(plan.eval_dir, "TTA"))
            results = _with_tta_results(results, tta)
        if comm.is_main_process():
            path = write_eval_metrics(s.output_dir, results, checkpoint.get("iteration", 0))
            logger.info("Evaluation of %s written to %s; metrics appended to %s", source, plan.eval_dir, path)
        return results


def _dataset_folder(folder: str, name: str, names) -> str:
    """Where the outputs of test dataset `name` go: `folder` itself, or `folder/<name>` when there are several."""
    return folder if len(names) == 1 else os.path.join(folder, name)


def _with_tta_results(results: Dict, tta: Dict) -> Dict:
    """`test` results with `test_with_TTA`'s beside them: {task: ...} and {task_TTA: ...} side by side, per dataset
    where there are several ({dataset: {task: ...}})."""
    if not tta or any(k.endswith("_TTA") for k in tta):
        return {**results, **tta}
    return {name: {**results.get(name, {}), **tta_results} for name, tta_results in tta.items()}


class _EvalHook(hooks.EvalHook):
    """Detectron2's EvalHook; with `final_eval=False` it does not evaluate after the last iteration (with period
    0 it then never evaluates: the hook is left out). Training that stopped with an error is not evaluated at the
    end (Detectron2's hook would score the unsaved model of a crashed last iteration)."""

    def __init__(self, eval_period, eval_function, final_eval: bool = True):
        super().__init__(eval_period, eval_function)
        self._final_eval = final_eval

    def after_train(self):
        finished = self.trainer.iter >= self.trainer.max_iter  # TrainerBase.train's mark of a finished loop
        if self._final_eval and finished:
            return super().after_train()
        if self._final_eval:
            logger.warning("Training stopped at iteration %d with an error: no final evaluation", self.trainer.iter)
        del self._func


class _PeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """Detectron2's PeriodicCheckpointer, with two differences:
    * `max_to_keep` counts every checkpoint of the run, those written before a --resume included (fvcore only
      counts the ones this process wrote, so a resumed run never prunes the earlier ones);
    * when the last iteration is also a periodic one, model_final.pth is a hard link to that checkpoint instead of
      a second copy of the same bytes (falls back to writing it where links are not possible)."""

    def before_train(self):
        super().before_train()
        if self.max_to_keep is not None:
            earlier = [p for p in run_checkpoints(self.checkpointer.save_dir) if not p.endswith("_final.pth")]
            self.recent_checkpoints = list(reversed(earlier)) + self.recent_checkpoints

    def step(self, iteration, **kwargs):
        iteration = int(iteration)
        last = self.max_iter is not None and iteration >= self.max_iter - 1
        if not (last and (iteration + 1) % self.period == 0):
            return super().step(iteration, **kwargs)
        max_iter, self.max_iter = self.max_iter, None  # fvcore's periodic save (and pruning) only
        try:
            super().step(iteration, **kwargs)
        finally:
            self.max_iter = max_iter
        if not self.checkpointer.link_checkpoint(f"{self.file_prefix}_{iteration:07d}", f"{self.file_prefix}_final"):
            self.checkpointer.save(f"{self.file_prefix}_final", iteration=iteration, **kwargs)


def _set_aside_replayed_metrics(output_dir: str, start_iter: int) -> None:
    """A resumed run repeats the iterations after its checkpoint, so their records in metrics.json (written before the
    interruption) would appear twice: move them to metrics.replayed_<N>.json, and say so."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)

    def replayed(line: bytes) -> bool:
        try:
            record = json.loads(line)
        except ValueError:
            return False
        if not isinstance(record, dict) or not isinstance(record.get("iteration"), int):
            return False
        # Training records from start_iter on are written again; an evaluation recorded at start_iter scored the
        # checkpoint's own model (the run's final evaluation), which stays true.
        return record["iteration"] > start_iter or (record["iteration"] == start_iter and "total_loss" in record)

    first = next((i for i, line in enumerate(lines) if replayed(line)), None)
    if first is None:
        return
    moved = [line for line in lines[first:] if replayed(line)]
    side = next_free_path(output_dir, "metrics.replayed_{}.json")
    with atomic_write(side) as f:
        f.writelines(moved)
    kept = [line for line in lines[first:] if not replayed(line)]
    # In place (the run's JSONWriter already holds the file open for appending): rewrite from the first moved record.
    with open(path, "r+b") as f:
        f.seek(sum(len(line) for line in lines[:first]))
        f.writelines(kept)
        f.truncate()
    logger.warning(
        "metrics.json held %d records of iterations >= %d, which this resumed run repeats: moved to %s",
        len(moved),
        start_iter,
        side,
    )
