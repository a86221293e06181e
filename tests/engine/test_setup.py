"""Config loading, the run built once from a copy, and the world-size scaling rule."""

import copy
import os

import pytest
from omegaconf import OmegaConf

from cascade_det.engine import ConfigValueError, Run, load_config

from detectron2.config import get_cfg

from ..conftest import ROOT

COCO_1X = os.path.join(ROOT, "configs/COCO/cascade_rcnn_R_50_FPN_1x.py")


def test_batch_lr_and_schedule_scale_with_the_number_of_processes_on_a_copy():
    cfg = load_config(COCO_1X)
    before = OmegaConf.to_yaml(cfg)
    max_iter = cfg.train.max_iter
    run = Run.of(cfg, world_size=4)  # written for 8 GPUs
    s = run.settings
    assert s.total_batch_size == 8 and s.base_lr == pytest.approx(0.01)
    assert s.max_iter == 2 * max_iter and s.eval_period == 2 * max_iter
    assert run.cfg.dataloader.train.total_batch_size == 8  # the run's own copy says what it runs
    assert OmegaConf.to_yaml(cfg) == before  # the caller's config is as it was
    assert any("total batch 16 -> 8" in note and "lr 0.02 -> 0.01" in note for note in run.notes)


def test_a_run_built_again_from_its_own_config_or_given_back_scales_once():
    run = Run.of(load_config(COCO_1X), world_size=4)
    assert Run.of(run) is run
    again = Run.of(run.cfg, world_size=4)
    assert again.settings.total_batch_size == 8 and not again.notes


def test_yacs_configs_scale_on_a_copy_too():
    cfg = get_cfg()
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 8
    cfg.SOLVER.IMS_PER_BATCH = 16
    original = copy.deepcopy(cfg)
    run = Run.of(cfg, world_size=2)
    assert run.settings.total_batch_size == 4 and cfg == original and cfg.SOLVER.IMS_PER_BATCH == 16


def test_reference_world_size_zero_leaves_the_values_alone():
    run = Run.of(load_config(COCO_1X, ["train.reference_world_size=0"]), world_size=2)
    assert run.settings.total_batch_size == 16 and run.settings.base_lr == 0.02 and not run.notes


def test_world_size_that_splits_the_batch_unevenly_is_an_error():
    cfg = load_config(COCO_1X, ["train.reference_world_size=3"])
    with pytest.raises(
        ConfigValueError, match="reference_world_size=3 with 2 processes gives a total batch size of 10.7"
    ):
        Run.of(cfg, world_size=2)


def test_values_are_checked_before_they_are_scaled():
    cfg = load_config(COCO_1X, ["train.reference_world_size=abc"])
    with pytest.raises(ConfigValueError, match=r"train.reference_world_size='abc': expected an integer >= 0"):
        Run.of(cfg, world_size=2)
    cfg = load_config(COCO_1X, ["dataloader.train.total_batch_size=0"])
    with pytest.raises(ConfigValueError, match="dataloader.train.total_batch_size=0: expected a positive"):
        Run.of(cfg, world_size=2)


def test_replace_makes_a_new_run_on_a_new_copy():
    run = Run.of(load_config(COCO_1X), world_size=8)
    other = run.replace(seed=7, note="seed chosen")
    assert other.settings.seed == 7 and other.cfg.train.seed == 7 and other.notes[-1] == "seed chosen"
    assert run.settings.seed == -1 and run.cfg.train.seed == -1
    with pytest.raises(ConfigValueError, match="train.seed='x'"):
        run.replace(seed="x")


def test_adding_a_key_on_purpose_with_plus():
    cfg = load_config(COCO_1X, ["+train.my_note=hello"])
    assert cfg.train.my_note == "hello"


def test_a_run_keeps_its_own_copy_when_the_callers_config_changes_later():
    cfg = load_config(COCO_1X, ["train.reference_world_size=0"])
    run = Run.of(cfg, world_size=1)
    cfg.train.max_iter = 5
    cfg.model.roi_heads.num_classes = 3
    assert run.cfg.train.max_iter == run.settings.max_iter != 5 and run.cfg.model.roi_heads.num_classes == 80
    yacs = get_cfg()
    run = Run.of(yacs, world_size=1)
    yacs.SOLVER.MAX_ITER = 5
    assert run.cfg.SOLVER.MAX_ITER == run.settings.max_iter != 5


def test_mixed_precision_on_the_cpu_trains_in_fp32_with_a_note_and_the_config_untouched():
    """The backbone recipes turn AMP on; Detectron2's AMPTrainer needs CUDA. On the CPU the run turns it off and
    says so (the caller's config keeps it on); on CUDA it stays."""
    cfg = load_config(os.path.join(ROOT, "configs/COCO/cascade_mask_rcnn_swin_T_FPN_3x.py"), ["train.device=cpu"])
    run = Run.of(cfg, world_size=8).on_available_device()
    assert run.settings.amp is False and cfg.train.amp.enabled is True
    assert any("Mixed precision needs CUDA" in n and "train.amp.enabled" in n for n in run.notes)
    fp32 = Run.of(load_config(COCO_1X, ["train.device=cpu"]), world_size=8)
    assert fp32.on_available_device().notes == fp32.notes
