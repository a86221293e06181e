"""Config loading and the world-size scaling rule."""

import os

import pytest

from cascade_det.engine import ConfigValueError, RunConfig, load_config

from ..conftest import ROOT

COCO_1X = os.path.join(ROOT, "configs/COCO/cascade_rcnn_R_50_FPN_1x.py")


def test_batch_and_lr_scale_with_the_number_of_processes():
    cfg = load_config(COCO_1X)
    max_iter = cfg.train.max_iter
    run = RunConfig.of(cfg, world_size=4)  # written for 8 GPUs
    assert cfg.dataloader.train.total_batch_size == 8 and run.max_iter == 2 * max_iter
    assert cfg.optimizer.lr == pytest.approx(0.01)
    assert cfg.train.max_iter == 2 * max_iter and cfg.train.eval_period == 2 * max_iter
    RunConfig.of(cfg, world_size=4)  # applied once: the saved config describes the run
    assert cfg.dataloader.train.total_batch_size == 8


def test_reference_world_size_zero_leaves_the_config_alone():
    cfg = load_config(COCO_1X, ["train.reference_world_size=0"])
    RunConfig.of(cfg, world_size=2)
    assert cfg.dataloader.train.total_batch_size == 16 and cfg.optimizer.lr == 0.02


def test_world_size_that_splits_the_batch_unevenly_is_an_error():
    cfg = load_config(COCO_1X, ["train.reference_world_size=3"])
    with pytest.raises(
        ConfigValueError, match="reference_world_size=3 with 2 processes gives a total batch size of 10.6"
    ):
        RunConfig.of(cfg, world_size=2)


def test_adding_a_key_on_purpose_with_plus():
    cfg = load_config(COCO_1X, ["+train.my_note=hello"])
    assert cfg.train.my_note == "hello"
