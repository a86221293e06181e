"""Load a config of either style, apply command-line overrides strictly, and set up the run."""
import difflib
import logging
import os
from typing import List, Sequence

import torch
from omegaconf import OmegaConf

from detectron2.config import LazyConfig, get_cfg
from detectron2.engine import default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from ..config import add_cascade_config

__all__ = ["apply_lazy_overrides", "load_config", "setup"]

logger = logging.getLogger("cascade_det")
_MISSING = object()


def apply_lazy_overrides(cfg, overrides: Sequence[str]):
    """`LazyConfig.apply_overrides`, except that a key the config does not have is an error (Detectron2 would
    silently add it, so a typo such as `train.max_iters=10` changes nothing). Prefix a key with `+` to add it
    on purpose (Hydra's syntax)."""
    plain: List[str] = []
    for override in overrides:
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
    cfg = add_cascade_config(get_cfg())
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(overrides))
    return cfg


def _use_cpu_without_cuda(cfg) -> None:
    """A config written for GPUs still runs on a machine without one: switch its device to CPU, and say so."""
    if torch.cuda.is_available():
        return
    if OmegaConf.is_config(cfg):
        if str(cfg.train.get("device", "cuda")).startswith("cuda"):
            logger.warning("No CUDA device: running on the CPU (train.device was %s)", cfg.train.device)
            cfg.train.device = "cpu"
    elif cfg.MODEL.DEVICE.startswith("cuda"):
        logger.warning("No CUDA device: running on the CPU (MODEL.DEVICE was %s)", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"


def setup(args):
    """Config from `args.config_file` and `args.opts`, device fixed up, logging and output dir set up."""
    cfg = load_config(args.config_file, args.opts)
    _use_cpu_without_cuda(cfg)
    if not OmegaConf.is_config(cfg):
        cfg.freeze()
    default_setup(cfg, args)
    # default_setup sets up the "detectron2" and "fvcore" loggers; ours (summaries, per-stage AP) too.
    output_dir = cfg.train.output_dir if OmegaConf.is_config(cfg) else cfg.OUTPUT_DIR
    setup_logger(output_dir, distributed_rank=comm.get_rank(), name="cascade_det")
    return cfg
