"""Training and evaluation: the run's config (`RunConfig`), its setup and checks, the trainer, and launching."""

from .args import argument_parser
from .launch import launch
from .run_config import ConfigValueError, RunConfig
from .setup import apply_lazy_overrides, check_run, load_config, setup
from .trainer import CascadeTrainer

__all__ = [
    "CascadeTrainer",
    "ConfigValueError",
    "RunConfig",
    "apply_lazy_overrides",
    "argument_parser",
    "check_run",
    "launch",
    "load_config",
    "setup",
]
