"""Training and evaluation: the trainer for yacs and LazyConfig configs, setup, and a CPU-capable launch."""
from .launch import launch
from .setup import apply_lazy_overrides, load_config, setup
from .trainer import CascadeTrainer, RunSettings, write_eval_metrics

__all__ = ["CascadeTrainer", "RunSettings", "apply_lazy_overrides", "launch", "load_config", "setup", "write_eval_metrics"]
