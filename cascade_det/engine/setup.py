"""Set up a run: load the config (strictly), check everything that can refuse the run, and only then write into
its output dir (logs, the config it runs with).

Order matters: a run refused for a used output dir, a missing weights file, an unusable dataset or a class-count
mismatch leaves every earlier file of the output dir as it was (not even log.txt is touched).
"""

import dataclasses
import difflib
import logging
import os
import re
import sys
from typing import List, Sequence, Tuple

import torch
from omegaconf import OmegaConf

from detectron2.config import LazyConfig, get_cfg
from detectron2.utils import comm
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from ..checkpoint import run_checkpoints
from ..config import add_cascade_config, option
from ..data import check_datasets
from ..errors import ConfigKeyError, MissingFileError
from ..outputs import next_free_path
from ..weights import check_weights_file, load_weights_file
from .args import register_datasets
from .determinism import choose_seed
from .launch import how_joined
from .resume_checks import check_resume
from .run import ConfigValueError, Run
from .run_dir import (
    OutputDirError,
    check_training_dir,
    check_writable,
    lock_output_dir,
    make_eval_dir,
    next_eval_dir,
    remove_stale_temporary_files,
)

__all__ = ["RunPlan", "apply_lazy_overrides", "check_run", "load_config", "setup"]

logger = logging.getLogger("cascade_det")
_MISSING = object()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def apply_lazy_overrides(cfg, overrides: Sequence[str]):
    """`LazyConfig.apply_overrides`, except that a key the config does not have is an error (Detectron2 would
    silently add it, so a typo such as `train.max_iters=10` changes nothing). Prefix a key with `+` to add it
    on purpose (Hydra's syntax)."""
    plain: List[str] = []
    for override in overrides:
        if override.startswith("--"):
            raise ConfigValueError(
                f"{override!r} came after the config overrides, which take everything that follows them: put the "
                f"flags (--resume, --eval-only, --num-gpus, ...) before the first key=value"
            )
        if "=" not in override:
            raise ConfigValueError(f"Config override {override!r} is not of the form key=value")
        key, value = override.split("=", 1)
        if key.startswith("+"):
            plain.append(f"{key[1:]}={value}")
            continue
        if OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False) is _MISSING:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
            siblings = list(node.keys()) if OmegaConf.is_dict(node) else []
            close = difflib.get_close_matches(leaf, siblings, n=3)
            hint = f" Did you mean {', '.join((parent + '.' if parent else '') + c for c in close)}?" if close else ""
            raise ConfigKeyError(
                f"Config key '{key}' does not exist in this config.{hint} (Write +{key}=... to add it.)"
            )
        plain.append(override)
    return LazyConfig.apply_overrides(cfg, plain)


def load_config(config_file: str, overrides: Sequence[str] = ()):
    """A LazyConfig `.py` or a yacs `.yaml` (with `add_cascade_config` defaults), with `key=value` overrides
    (LazyConfig) or `KEY VALUE` pairs (yacs). Unknown keys raise an error naming the key."""
    if not os.path.isfile(config_file):
        raise MissingFileError(f"--config-file {config_file} does not exist")
    if config_file.endswith(".py"):
        return apply_lazy_overrides(LazyConfig.load(config_file), overrides)
    if not config_file.endswith((".yaml", ".yml")):
        raise ConfigValueError(f"--config-file {config_file}: expected a LazyConfig .py or a yacs .yaml file")
    flags = [o for o in overrides if str(o).startswith("--")]
    if flags:
        raise ConfigValueError(
            f"{flags[0]!r} came after the config overrides, which take everything that follows them: put the flags "
            "(--resume, --eval-only, --num-gpus, ...) before the first KEY VALUE pair"
        )
    cfg = add_cascade_config(get_cfg())
    merges = ((config_file, cfg.merge_from_file, config_file), ("the overrides", cfg.merge_from_list, list(overrides)))
    for where, merge, what in merges:
        try:
            merge(what)
        except (KeyError, ValueError, TypeError, AssertionError) as e:  # yacs' own checks, named by their source
            message = e.args[0] if e.args else repr(e)
            if isinstance(e, KeyError) or "Non-existent" in str(message):  # a key Detectron2 and we do not define
                raise ConfigKeyError(f"{where}: {message}") from e
            raise ConfigValueError(f"{where}: {message}") from e
    return cfg


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What the checks decided, before anything was written: the `run` (with what the checks filled in, e.g. the
    number of classes from the datasets), whether training `resuming` continues a run of the output dir, the
    `eval_dir` an --eval-only run writes into, and the `notes` to log once the run's log is set up."""

    run: Run
    eval_only: bool
    resume: bool
    resuming: bool = False
    eval_dir: str = ""
    notes: Tuple[str, ...] = ()
    show_dir: str = ""  # --eval-only --show-dir: where the drawn predictions go
    show_score_threshold: float = 0.3


def _check_weights_readable(run: Run) -> None:
    """The configured weights file exists, is local, and reads safely as a checkpoint (the whole file is read, as the
    load will read it): a missing, empty, truncated or unsafe file is refused before the output dir is touched."""
    path, key = run.settings.weights, run.key("weights")
    check_weights_file(path, key)
    load_weights_file(path, allow_unsafe_pickle=run.settings.allow_unsafe_pickle)


def _check_split(run: Run, split: str, notes: List[str]) -> List[str]:
    """`check_datasets` of the run's "training" or "test" datasets, with the option that skips their unreadable
    images (its key named in the message; when it is on, an unreadable sample image is a note)."""
    if split == "training":
        names, key = run.settings.train_datasets, run.key("train_datasets")
        skip = option("DATALOADER.SKIP_UNREADABLE_IMAGES")
        skip_key, skipping, what = run.style.key(skip), run.style.read(run.cfg, skip) is True, "to skip them"
    else:
        names, key = run.settings.test_datasets, run.key("test_datasets")
        skip_key, skipping = run.key("skip_unreadable_test_images"), run.settings.skip_unreadable_test_images
        what = "to evaluate them as blank"
    hint = f"set {skip_key}=True {what}"
    return check_datasets(names, split=split, key=key, notes=notes, skip_hint=hint, skip_unreadable=skipping)


def check_run(run: Run, *, eval_only: bool, resume: bool) -> RunPlan:
    """Every check that can refuse the run, before anything is written: output dir, weights file (read safely),
    what --resume would continue, datasets, number of classes, per-stage evaluation. Returns the plan; the number
    of classes is filled in from the datasets' categories where the config leaves it unset."""
    s = run.settings
    notes: List[str] = []
    resuming = False
    check_writable(s.output_dir, run.key("output_dir"))
    if eval_only:
        if not s.weights and not (resume and run_checkpoints(s.output_dir)):
            raise ConfigValueError(
                f"--eval-only needs weights: add {run.key('weights')}=PATH (or --resume to evaluate the newest "
                f"checkpoint of the output dir {s.output_dir}, which holds none now)"
            )
        if s.weights and not resume:
            _check_weights_readable(run)
    else:
        resuming = check_training_dir(s.output_dir, resume, run.key("output_dir"))
        if resume and not resuming:
            notes.append(f"--resume: nothing to resume in {s.output_dir} (no checkpoint): starting a new run")
        if s.weights and not resuming:
            _check_weights_readable(run)
    classes = []
    if not eval_only and not s.train_datasets:
        raise ConfigValueError(f"{run.key('train_datasets')} is empty: name the registered training dataset(s)")
    if not eval_only:
        classes = _check_split(run, "training", notes)
    test_classes = _check_split(run, "test", notes)
    if classes and test_classes and classes != test_classes:
        raise ConfigValueError(
            f"The training datasets ({run.key('train_datasets')}) have the categories {_names(classes)}, the test "
            f"datasets ({run.key('test_datasets')}) {_names(test_classes)}: train and test on one label set"
        )
    run = _with_num_classes(run, classes or test_classes)
    run.check_per_stage_eval()
    if resuming:  # with the number of classes filled in: the model it builds is the one that will train
        point = check_resume(run)
        notes.extend(point.notes if point else ())
    eval_dir = next_eval_dir(s.output_dir) if eval_only else ""
    return RunPlan(run, eval_only, resume, resuming, eval_dir, run.notes + tuple(notes))


def _with_show_dir(plan: RunPlan, show_dir: str, threshold: float) -> RunPlan:
    """The plan with --show-dir / --show-score-thr, checked: an --eval-only option, into a new or empty folder."""
    if not show_dir:
        return plan
    if not plan.eval_only:
        raise ConfigValueError("--show-dir draws the predictions of an --eval-only run: add --eval-only")
    if not 0 <= threshold <= 1:
        raise ConfigValueError(f"--show-score-thr {threshold}: expected a score between 0 and 1")
    if os.path.isfile(show_dir) or (os.path.isdir(show_dir) and os.listdir(show_dir)):
        raise OutputDirError(f"--show-dir {show_dir} exists and is not an empty folder: choose a new one")
    return dataclasses.replace(plan, show_dir=show_dir, show_score_threshold=threshold)


def _names(classes: List[str]) -> str:
    return "[" + ", ".join(classes[:6]) + (", ..." if len(classes) > 6 else "") + f"] ({len(classes)})"


def _with_num_classes(run: Run, classes: List[str]) -> Run:
    """`run`, with its number of classes from the datasets' categories where the config leaves it unset; a
    configured number that disagrees with them is an error."""
    configured, key = run.settings.num_classes, run.key("num_classes")
    if configured is None:
        if not classes:
            raise ConfigValueError(f"{key} is not set and the datasets name no categories: set it")
        return run.replace(num_classes=len(classes), note=f"{key} = {len(classes)}, from the datasets' categories")
    if classes and configured != len(classes):
        raise ConfigValueError(
            f"{key}={configured}, but the datasets have {len(classes)} categories ({', '.join(classes[:6])}"
            f"{', ...' if len(classes) > 6 else ''}): set {key}={len(classes)}"
        )
    return run


def setup(args) -> RunPlan:
    """The run described by `args` (`argument_parser()`: config_file, opts, eval_only, resume, register_coco,
    register_voc; datasets are registered first, in every process), checked (`check_run`) and then set up: output
    dir (or `inference/eval_<N>/` for --eval-only), logging, the config saved beside the outputs, the seed.

    Mirrors Detectron2's `default_setup`, which it cannot call: that one writes config.yaml over a resumed run's,
    and knows neither the eval-only folders, nor the chosen seed, nor the cascade_det logger."""
    register_datasets(args)
    run = Run.of(load_config(args.config_file, args.opts)).on_available_device()
    eval_only = bool(getattr(args, "eval_only", False))
    plan = check_run(run, eval_only=eval_only, resume=bool(getattr(args, "resume", False)))
    plan = _with_show_dir(plan, getattr(args, "show_dir", ""), getattr(args, "show_score_thr", 0.3))
    comm.synchronize()  # every process has passed its checks; nothing was written before this point

    output_dir = plan.run.settings.output_dir
    removed: List[str] = []
    if eval_only:
        # One folder for every process, taken by the main process (an exclusive mkdir) before any other writes.
        eval_dir = make_eval_dir(output_dir) if comm.is_main_process() else ""
        plan = dataclasses.replace(plan, eval_dir=comm.all_gather(eval_dir)[0])
        folder, config_name = plan.eval_dir, "config.yaml"
    else:
        folder, config_name = output_dir, "config.yaml"
        if comm.is_main_process():
            os.makedirs(folder, exist_ok=True)
            lock_output_dir(folder)  # one training run at a time here; then look again, under the lock
            check_training_dir(folder, plan.resume, plan.run.key("output_dir"))
            removed = remove_stale_temporary_files(folder)
        if plan.resuming and os.path.exists(os.path.join(folder, config_name)):
            config_name = os.path.basename(next_free_path(folder, "config_resume_{}.yaml"))
    comm.synchronize()
    _setup_logging(folder)
    logger.info("Rank of current process: %d. World size: %d", comm.get_rank(), comm.get_world_size())
    if how_joined():
        logger.info("Joined as %s", how_joined())
    logger.info("Environment info:\n%s", collect_env_info())
    logger.info("Command line arguments: %s", args)
    for note in plan.notes:
        logger.warning(note)
    if removed:
        logger.warning("Removed temporary files an interrupted save left in %s: %s", folder, ", ".join(removed))
    seed = choose_seed(plan.run.settings.seed)
    run = plan.run.replace(seed=seed) if seed != plan.run.settings.seed else plan.run  # saved with the config
    plan = dataclasses.replace(plan, run=run)
    if comm.is_main_process():
        path = os.path.join(folder, config_name)
        run.dump(path)
        logger.info("Full config saved to %s", path)
    seed_all_rng(seed + comm.get_rank())
    if not eval_only:
        torch.backends.cudnn.benchmark = run.settings.cudnn_benchmark
    return plan


class _PlainFormatter(logging.Formatter):
    """The wrapped formatter's text without terminal colour codes (for log files)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record):
        return _ANSI.sub("", self.inner.format(record))


def _setup_logging(folder: str) -> None:
    """Detectron2's, fvcore's and our loggers to the console and to `folder/log.txt` (log.txt.rank<N> for other
    processes), the file without colour codes."""
    for name in ("detectron2", "fvcore", "cascade_det"):
        setup_logger(
            folder, distributed_rank=comm.get_rank(), name=name, abbrev_name={"detectron2": "d2"}.get(name, name)
        )
        for handler in logging.getLogger(name).handlers:
            if getattr(handler, "stream", None) not in (sys.stdout, sys.stderr) and not isinstance(
                handler.formatter, _PlainFormatter
            ):
                handler.setFormatter(_PlainFormatter(handler.formatter))
