"""`Run`: one training or evaluation run, built once from a copy of the user's config.

    run = Run.of(cfg)              # cfg: a LazyConfig or a yacs CfgNode; it is never changed
    run.settings.max_iter          # every value the trainer reads, checked, in a frozen record
    model = run.build_model()      # builders of the config's style (cascade_det.engine.styles)

What `Run.of` does, in this order: copy the config; read every run setting of the key table
(`cascade_det.config.OPTIONS`) and check it, each error naming the key in the config's own style and what it expects;
then, where the config asks for it (`train.reference_world_size` / `SOLVER.REFERENCE_WORLD_SIZE`), scale the copy to
the number of processes and say so in `run.notes`. The copy records the scaling (its reference world size becomes
the actual one), so a `Run` built again from `run.cfg` scales nothing; a `Run` given to `Run.of` is returned as it is.
A changed value (`run.replace(seed=...)`) is a new `Run` on a new copy.
"""

import dataclasses
import logging
from typing import Any, Dict, List, Optional, Tuple

import torch

import detectron2.data.transforms as T
from detectron2.evaluation import DatasetEvaluators
from detectron2.utils import comm

from ..config import REQUIRED, run_options
from ..errors import ConfigValueError
from ..evaluation import FinalDetections, PerStageCOCOEvaluator, per_stage_backend
from ..modeling import CascadeRCNNROIHeads
from ..modeling.speed import optimize_for_speed
from ..modeling.tta import CascadeRCNNWithTTA, tta_config
from .input_checks import check_images_fit_the_square
from .styles import MISSING, style_of

__all__ = ["ConfigValueError", "Run", "RunSettings"]

logger = logging.getLogger("cascade_det")


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The run settings of the key table (`cascade_det.config.OPTIONS`, `setting` names them), checked, plus what the
    config style derives: `ddp` (DistributedDataParallel keyword arguments) and `precise_bn` ((period, iterations)
    or None). Dataset names are tuples; `weights` is "" for none."""

    output_dir: str
    max_iter: int
    weights: str
    amp: bool
    checkpoint_period: int
    max_to_keep: Optional[int]
    eval_period: int
    log_period: int
    seed: int
    device: str
    total_batch_size: int
    num_workers: int
    base_lr: float
    cudnn_benchmark: bool
    tta: bool
    tta_min_sizes: Tuple[int, ...]
    tta_max_size: int
    tta_flip: bool
    num_classes: Optional[int]
    train_datasets: Tuple[str, ...]
    test_datasets: Tuple[str, ...]
    per_stage_eval: bool
    final_eval: bool
    skip_unreadable_test_images: bool
    eval_backend: str
    allow_unsafe_pickle: bool
    allow_partial_checkpoint: bool
    fold_frozen_bn: bool
    channels_last_inference: bool
    reference_world_size: int
    loss_explosion_factor: float
    ddp: Dict[str, Any]
    precise_bn: Optional[Tuple[int, int]]


_DERIVED = ("ddp", "precise_bn")
_FIELDS = {f.name for f in dataclasses.fields(RunSettings)}
assert set(run_options()) | set(_DERIVED) == _FIELDS, f"RunSettings and OPTIONS differ: {_FIELDS ^ set(run_options())}"


def _read_settings(style, cfg) -> RunSettings:
    """Every run setting of `cfg`, checked before any is used."""
    values = {}
    for name, option in run_options().items():
        value = style.read(cfg, option)
        if value is MISSING:
            if option.default is REQUIRED:
                raise ConfigValueError(f"{style.key(option)} is missing from this config (expected {option.expects})")
            value = option.default
        if not option.check(value):
            raise ConfigValueError(f"{style.key(option)}={value!r}: expected {option.expects}")
        values[name] = value
    for split in ("train_datasets", "test_datasets"):
        names = values[split]
        values[split] = (names,) if isinstance(names, str) else tuple(names)
    values["weights"] = values["weights"] or ""
    values["tta_min_sizes"] = tuple(values["tta_min_sizes"])
    return RunSettings(**values, **style.derived(cfg))


@dataclasses.dataclass(frozen=True)
class Run:
    """A run: `cfg` (its own copy of the config, as it runs: scaled, with the values `replace` set), `style` (the
    builders of the config's style), `settings` (checked values) and `notes` (what building it changed, to log)."""

    cfg: Any
    style: type
    settings: RunSettings
    notes: Tuple[str, ...] = ()

    @classmethod
    def of(cls, cfg, world_size: Optional[int] = None) -> "Run":
        """The run of `cfg` (a LazyConfig or a yacs CfgNode, left as it is) on `world_size` processes (default: this
        job's). A `Run` is returned as it is."""
        if isinstance(cfg, Run):
            return cfg
        style = style_of(cfg)
        if style is None:
            raise TypeError(f"Expected a LazyConfig (DictConfig) or a yacs CfgNode, got {type(cfg).__name__}")
        if world_size is None:
            world_size = comm.get_world_size()
        cfg = style.copy(cfg)
        settings = _read_settings(style, cfg)
        notes: List[str] = []
        reference = settings.reference_world_size
        key = style.key(run_options()["reference_world_size"])
        if reference and reference != world_size:
            batch = settings.total_batch_size * world_size / reference
            if batch != int(batch) or batch < 1:
                raise ConfigValueError(
                    f"{key}={reference} with {world_size} processes gives a total batch size of {batch:.3g}: choose "
                    f"a process count that divides the batch evenly, or set {key}=0"
                )
            cfg = style.scaled(cfg, run_options(), settings, world_size)
            scaled = _read_settings(style, cfg)
            notes.append(
                f"Scaled for {world_size} processes ({key} was {reference}): total batch "
                f"{settings.total_batch_size} -> {scaled.total_batch_size}, lr {settings.base_lr:g} -> "
                f"{scaled.base_lr:g}, max_iter {settings.max_iter} -> {scaled.max_iter}"
            )
            settings = scaled
        if settings.total_batch_size % world_size:
            raise ConfigValueError(
                f"{style.key(run_options()['total_batch_size'])}={settings.total_batch_size}: expected a positive "
                f"multiple of the number of processes ({world_size})"
            )
        return cls(cfg, style, settings, tuple(notes))

    def key(self, setting: str) -> str:
        """The config key of run setting `setting` in this config's style (for messages)."""
        return self.style.key(run_options()[setting])

    def replace(self, note: str = "", **settings) -> "Run":
        """A new run whose config (a new copy) has these settings changed, e.g. `run.replace(seed=7)`; `note` is
        added to its notes."""
        options = run_options()
        cfg = self.style.with_values(self.cfg, {options[name]: value for name, value in settings.items()})
        return Run(cfg, self.style, _read_settings(self.style, cfg), self.notes + ((note,) if note else ()))

    def on_available_device(self) -> "Run":
        """This run, or one on the CPU (with a note) when its config asks for CUDA on a machine without it; on the
        CPU without mixed precision (Detectron2's AMPTrainer needs CUDA; the backbone recipes turn it on)."""
        run, device = self, self.settings.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            run = run.replace(
                device="cpu", note=f"No CUDA device: running on the CPU ({run.key('device')} was {device})"
            )
        if run.settings.amp and not run.settings.device.startswith("cuda"):
            device = run.settings.device
            note = f"Mixed precision needs CUDA: training in fp32 on {device} ({run.key('amp')} was True)"
            run = run.replace(amp=False, note=note)
        return run

    def roi_heads_class(self):
        """The class of the model's ROI heads (or its name, where it is not registered)."""
        return self.style.roi_heads_class(self.cfg)

    def check_per_stage_eval(self) -> None:
        """Per-stage evaluation needs cascade heads: refuse it for another model."""
        heads = self.roi_heads_class()
        if self.settings.per_stage_eval and not (isinstance(heads, type) and issubclass(heads, CascadeRCNNROIHeads)):
            name = getattr(heads, "__name__", heads)
            key = self.key("per_stage_eval")
            raise ConfigValueError(
                f"{key}=True needs cascade heads (CascadeRCNNROIHeads), but this model's ROI heads are {name}: set "
                f"{key}=False"
            )

    # ---- builders (each leaves self.cfg as it is) ----
    def build_model(self) -> torch.nn.Module:
        """The model on its device, with the speed options applied, returning the stage detections per-stage
        evaluation reads where it is on."""
        s = self.settings
        model = self.style.build_model(self.cfg, s.device, stage_detections=s.per_stage_eval)
        model = optimize_for_speed(
            model, fold_frozen_bn=s.fold_frozen_bn, channels_last_inference=s.channels_last_inference
        )
        style = self.style
        check_images_fit_the_square(
            model,
            style.square_key,
            [
                ("train", style.resize_keys["train"], lambda: style.train_augmentations(self.cfg)),
                ("test", style.resize_keys["test"], lambda: self.test_preprocessing()[1]),
            ],
        )
        logger.info("Model:\n%s", model)  # as it runs: the speed options show as FastConv2d(...)
        return model

    def with_tta(self, model: torch.nn.Module) -> CascadeRCNNWithTTA:
        """`model` under test-time augmentation (`test.aug` / `TEST.AUG`; sizes, flip), the same for both styles."""
        s = self.settings
        resize = T.ResizeShortestEdge(max(s.tta_min_sizes), s.tta_max_size)
        check_images_fit_the_square(model, self.style.square_key, [("TTA", self.key("tta_max_size"), lambda: [resize])])
        return CascadeRCNNWithTTA(tta_config(model, s.tta_min_sizes, s.tta_max_size, s.tta_flip), model)

    def build_optimizer(self, model: torch.nn.Module):
        return self.style.build_optimizer(self.cfg, model)

    def build_lr_scheduler(self, optimizer):
        return self.style.build_lr_scheduler(self.cfg, optimizer, self.settings.max_iter)

    def build_train_loader(self):
        return self.style.build_train_loader(self.cfg)

    def build_train_mapper(self):
        """The training loader's dataset mapper, its augmentation included (to look at what training sees)."""
        return self.style.build_train_mapper(self.cfg)

    def build_test_loader(self, dataset_name: str):
        return self.style.build_test_loader(self.cfg, dataset_name, self.settings.skip_unreadable_test_images)

    def test_preprocessing(self):
        """(the model's input format, the test-time augmentations) as evaluation applies them to an image."""
        return self.style.test_preprocessing(self.cfg)

    def build_evaluator(self, dataset_name: str, output_dir: str):
        """The evaluator of one test dataset, writing into `output_dir`: the config's own (COCO), seeing the model's
        own detections, plus per-stage AP where per-stage evaluation is on."""
        s = self.settings
        fast = s.eval_backend == "faster-coco-eval"
        evaluator = FinalDetections(self.style.build_evaluator(self.cfg, dataset_name, output_dir, fast))
        if not s.per_stage_eval:
            return evaluator
        per_stage = PerStageCOCOEvaluator(dataset_name, output_dir, per_stage_backend(s.eval_backend))
        return DatasetEvaluators([evaluator, per_stage])

    def dump(self, path: str) -> None:
        """Save the config as the run uses it to `path`."""
        self.style.dump(self.cfg, path)
