"""Set up a run: load the config (strictly), check everything that can refuse the run, and only then write into
its output dir (logs, the config it runs with).

Order matters: a run refused for a used output dir, a missing weights file, an unusable dataset or a class-count
mismatch leaves every earlier file of the output dir as it was (not even log.txt is touched).
"""

import difflib
import logging
import os
import re
import sys
from typing import List, Sequence

import torch
from omegaconf import OmegaConf

from detectron2.config import LazyConfig, get_cfg
from detectron2.utils import comm
from detectron2.utils.collect_env import collect_env_info
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from ..checkpoint import run_checkpoints
from ..config import add_cascade_config
from ..data import check_datasets
from ..data.register import register_from_args
from ..weights import check_weights_file
from .determinism import choose_seed
from .launch import how_joined
from .run_config import ConfigValueError, RunConfig
from .run_dir import check_training_dir, next_eval_dir

__all__ = ["apply_lazy_overrides", "check_run", "load_config", "setup"]

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
            raise ValueError(
                f"{override!r} came after the config overrides, which take everything that follows them: put the "
                f"flags (--resume, --eval-only, --num-gpus, ...) before the first key=value"
            )
        if "=" not in override:
            raise ValueError(f"Config override {override!r} is not of the form key=value")
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
            raise KeyError(f"Config key '{key}' does not exist in this config.{hint} (Write +{key}=... to add it.)")
        plain.append(override)
    return LazyConfig.apply_overrides(cfg, plain)


def load_config(config_file: str, overrides: Sequence[str] = ()):
    """A LazyConfig `.py` or a yacs `.yaml` (with `add_cascade_config` defaults), with `key=value` overrides
    (LazyConfig) or `KEY VALUE` pairs (yacs). Unknown keys raise an error naming the key."""
    if not os.path.isfile(config_file):
        raise FileNotFoundError(f"--config-file {config_file} does not exist")
    if config_file.endswith(".py"):
        return apply_lazy_overrides(LazyConfig.load(config_file), overrides)
    if not config_file.endswith((".yaml", ".yml")):
        raise ValueError(f"--config-file {config_file}: expected a LazyConfig .py or a yacs .yaml file")
    flags = [o for o in overrides if str(o).startswith("--")]
    if flags:
        raise ValueError(
            f"{flags[0]!r} came after the config overrides, which take everything that follows them: put the flags "
            "(--resume, --eval-only, --num-gpus, ...) before the first KEY VALUE pair"
        )
    cfg = add_cascade_config(get_cfg())
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(overrides))
    return cfg


def check_run(run: RunConfig, *, eval_only: bool, resume: bool) -> None:
    """Every check that can refuse the run, before anything is written: output dir, weights file, datasets,
    number of classes, per-stage evaluation. Sets `run.resuming` (training) and completes `run.num_classes()` from
    the datasets' categories when the config leaves it unset. What it has to say goes to `run.notes`, logged once the
    run's log is set up (nothing is written before)."""
    run.resuming = False
    run.notes = []
    if eval_only:
        if not run.weights and not (resume and run_checkpoints(run.output_dir)):
            raise ConfigValueError(
                f"--eval-only needs weights: add {run.key('weights')}=PATH (or --resume to evaluate the newest "
                f"checkpoint of the output dir {run.output_dir}, which holds none now)"
            )
        if run.weights and not resume:
            check_weights_file(run.weights, run.key("weights"))
    else:
        run.resuming = check_training_dir(run.output_dir, resume, run.key("output_dir"))
        if resume and not run.resuming:
            run.notes.append(f"--resume: nothing to resume in {run.output_dir} (no checkpoint): starting a new run")
        if run.weights and not run.resuming:
            check_weights_file(run.weights, run.key("weights"))
    classes = []
    if not eval_only and not run.train_datasets:
        raise ConfigValueError(f"{run.dataset_key('train')} is empty: name the registered training dataset(s)")
    if not eval_only:
        classes = check_datasets(run.train_datasets, split="training", key=run.dataset_key("train"))
    test_classes = check_datasets(run.test_datasets, split="test", key=run.dataset_key("test"))
    if classes and test_classes and classes != test_classes:
        raise ConfigValueError(
            f"The training datasets ({run.dataset_key('train')}) have the categories {_names(classes)}, the test "
            f"datasets ({run.dataset_key('test')}) {_names(test_classes)}: train and test on one label set"
        )
    classes = classes or test_classes
    _check_num_classes(run, classes)
    run.check_per_stage_eval()


def _names(classes: List[str]) -> str:
    return "[" + ", ".join(classes[:6]) + (", ..." if len(classes) > 6 else "") + f"] ({len(classes)})"


def _check_num_classes(run: RunConfig, classes: List[str]) -> None:
    configured = run.num_classes()
    if configured is None:
        if not classes:
            raise ConfigValueError(f"{run.num_classes_key} is not set and the datasets name no categories: set it")
        run.set_num_classes(len(classes))
        run.notes.append(f"{run.num_classes_key} = {len(classes)}, from the datasets' categories")
    elif classes and configured != len(classes):
        raise ConfigValueError(
            f"{run.num_classes_key}={configured}, but the datasets have {len(classes)} categories "
            f"({', '.join(classes[:6])}{', ...' if len(classes) > 6 else ''}): set {run.num_classes_key}="
            f"{len(classes)}"
        )


def setup(args) -> RunConfig:
    """The run described by `args` (`argument_parser()`: config_file, opts, eval_only, resume, register_coco,
    register_voc; datasets are registered first, in every process), checked
    (`check_run`) and then set up: output dir (or `inference/eval_<N>/` for --eval-only), logging, the config saved
    beside the outputs, the seed."""
    register_from_args(getattr(args, "register_coco", ()), getattr(args, "register_voc", ()))
    cfg = load_config(args.config_file, args.opts)
    run = RunConfig.of(cfg, comm.get_world_size())
    run.use_cpu_without_cuda()
    eval_only = bool(getattr(args, "eval_only", False))
    check_run(run, eval_only=eval_only, resume=bool(getattr(args, "resume", False)))
    comm.synchronize()  # every process has passed its checks; nothing was written before this point

    if eval_only:
        # One folder name for every process, chosen before any of them creates it.
        run.eval_dir = comm.all_gather(next_eval_dir(run.output_dir))[0]
        folder, config_name = run.eval_dir, "config.yaml"
    else:
        folder, config_name = run.output_dir, "config.yaml"
        if run.resuming and os.path.exists(os.path.join(folder, config_name)):
            config_name = _free_name(folder, "config_resume_{}.yaml")
    if comm.is_main_process():
        os.makedirs(folder, exist_ok=True)
    comm.synchronize()
    _setup_logging(folder)
    logger.info("Rank of current process: %d. World size: %d", comm.get_rank(), comm.get_world_size())
    if how_joined():
        logger.info("Joined as %s", how_joined())
    logger.info("Environment info:\n%s", collect_env_info())
    logger.info("Command line arguments: %s", args)
    for note in run.notes:
        logger.warning(note)
    run.set("seed", choose_seed(run.seed))  # a random seed is written into the saved config
    if comm.is_main_process():
        path = os.path.join(folder, config_name)
        run.dump(path)
        logger.info("Full config saved to %s", path)
    seed_all_rng(run.seed + comm.get_rank())
    if not eval_only and run.style == "yacs":
        torch.backends.cudnn.benchmark = run.cfg.CUDNN_BENCHMARK
    return run


def _free_name(folder: str, pattern: str) -> str:
    k = 1
    while os.path.exists(os.path.join(folder, pattern.format(k))):
        k += 1
    return pattern.format(k)


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
