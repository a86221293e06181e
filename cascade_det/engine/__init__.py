"""Training and evaluation: a run built once from a copy of the config (`Run`, with the two config styles' builders
in `styles`), its checks and setup (`setup` returns a `RunPlan`), the trainer, and launching."""

from .args import argument_parser
from .launch import launch
from .run import ConfigValueError, Run, RunSettings
from .setup import RunPlan, apply_lazy_overrides, check_run, load_config, setup
from .trainer import CascadeTrainer

__all__ = [
    "CascadeTrainer",
    "ConfigValueError",
    "Run",
    "RunPlan",
    "RunSettings",
    "apply_lazy_overrides",
    "argument_parser",
    "check_run",
    "launch",
    "load_config",
    "setup",
]
