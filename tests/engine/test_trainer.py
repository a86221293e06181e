"""`CascadeTrainer` as a Detectron2 user drives `DefaultTrainer` from a script: its classmethods build from either
config style and never change the config they are given; `CascadeTrainer(cfg).train()` and `.test(cfg, model)` run."""

import copy
import json
import os

import pytest
from omegaconf import OmegaConf

from cascade_det.engine import CascadeTrainer, load_config

from detectron2.config import LazyConfig

from ..conftest import QUICKSTART, ROOT

YACS = os.path.join(ROOT, "configs/Shapes/cascade_rcnn_R_18_FPN.yaml")


def small_lazy(tmp_path, *overrides):
    return load_config(
        os.path.join(ROOT, QUICKSTART),
        [
            f"train.output_dir={tmp_path}",
            "train.device=cpu",
            "train.max_iter=2",
            "train.eval_period=0",
            "dataloader.train.total_batch_size=16",
            "dataloader.train.num_workers=0",
            "dataloader.test.num_workers=0",
            "train.per_stage_eval=True",
            *overrides,
        ],
    )


def small_yacs(tmp_path):
    return load_config(
        YACS,
        ["OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD", "0"]
        + ["SOLVER.IMS_PER_BATCH", "2", "DATALOADER.NUM_WORKERS", "0", "TEST.PER_STAGE_EVAL", "True"],
    )


def dump(cfg):
    return OmegaConf.to_yaml(cfg) if OmegaConf.is_config(cfg) else cfg.dump()


@pytest.mark.parametrize("style", ["lazy", "yacs"])
def test_classmethods_leave_the_config_they_are_given_as_it_was(tmp_path, style):
    # Written for 8 processes and run on one: every builder scales its own copy, none the caller's.
    cfg = small_lazy(tmp_path, "train.reference_world_size=8") if style == "lazy" else small_yacs(tmp_path)
    before = dump(cfg)
    model = CascadeTrainer.build_model(cfg)
    optimizer = CascadeTrainer.build_optimizer(cfg, model)
    CascadeTrainer.build_lr_scheduler(cfg, optimizer)
    CascadeTrainer.build_train_loader(cfg)
    CascadeTrainer.build_test_loader(cfg, "cascade_shapes_val")
    CascadeTrainer.build_evaluator(cfg, "cascade_shapes_val", str(tmp_path / "eval"))
    assert dump(cfg) == before
    if style == "lazy":  # the scaling reached the builders: batch 16 on one process of 8 is 2
        assert CascadeTrainer.build_train_loader(cfg).batch_size == 2


def test_a_trainer_from_a_users_script_trains_and_tests_as_defaulttrainer_does(tmp_path):
    cfg = small_lazy(tmp_path, "dataloader.train.total_batch_size=2")
    before = copy.deepcopy(dump(cfg))
    trainer = CascadeTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert trainer.iter == 2 and os.path.isfile(tmp_path / "model_final.pth")
    results = CascadeTrainer.test(cfg, trainer.model)  # Detectron2's signature: (cfg, model)
    assert "bbox" in results and "per_stage_bbox" in results
    assert dump(cfg) == before


def test_with_test_time_augmentation_training_ends_with_a_tta_evaluation_into_metrics(tmp_path):
    cfg = small_lazy(
        tmp_path, "dataloader.train.total_batch_size=2", "test.aug.enabled=True", "test.aug.min_sizes=[128]"
    )
    trainer = CascadeTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    assert {"bbox", "bbox_TTA"} <= set(results)
    with open(tmp_path / "metrics.json") as f:
        last = json.loads(f.read().splitlines()[-1])
    assert "bbox_TTA/AP" in last and "bbox/AP" in last
    assert os.path.isdir(tmp_path / "inference" / "iter_0000001_TTA")


def test_tta_results_sit_beside_the_plain_ones_for_one_dataset_and_per_dataset_for_several():
    from cascade_det.engine.trainer import _with_tta_results

    one = _with_tta_results({"bbox": {"AP": 1.0}}, {"bbox_TTA": {"AP": 2.0}})
    assert one == {"bbox": {"AP": 1.0}, "bbox_TTA": {"AP": 2.0}}
    several = _with_tta_results(
        {"a": {"bbox": {"AP": 1.0}}, "b": {"bbox": {"AP": 3.0}}},
        {"a": {"bbox_TTA": {"AP": 2.0}}, "b": {"bbox_TTA": {"AP": 4.0}}},
    )
    assert several == {
        "a": {"bbox": {"AP": 1.0}, "bbox_TTA": {"AP": 2.0}},
        "b": {"bbox": {"AP": 3.0}, "bbox_TTA": {"AP": 4.0}},
    }
    assert _with_tta_results({"bbox": {"AP": 1.0}}, {}) == {"bbox": {"AP": 1.0}}


def test_final_eval_false_with_eval_period_0_never_evaluates_and_true_evaluates_once(tmp_path):
    from ..reliability.conftest import TINY, run_main

    for final_eval, evaluations in ((False, 0), (True, 1)):
        out = tmp_path / str(final_eval)
        args = ["--config-file", QUICKSTART, f"train.output_dir={out}", "train.max_iter=1", *TINY]
        assert run_main(*args, f"train.final_eval={final_eval}") is None
        with open(out / "metrics.json") as f:
            lines = [json.loads(line) for line in f]  # every line strict JSON (NaN as null)
        assert sum("bbox/AP" in m for m in lines) == evaluations
        assert os.path.isdir(out / "inference") == bool(evaluations)


def test_scaling_to_the_reference_world_size_is_logged_and_saved_with_the_config(tmp_path):
    from ..reliability.conftest import TINY, log_of, run_main

    out = str(tmp_path / "run")
    args = ["--config-file", QUICKSTART, f"train.output_dir={out}", *TINY]
    scaled = ["train.reference_world_size=4", "dataloader.train.total_batch_size=8", "train.max_iter=1"]
    assert run_main(*args, *scaled, "train.final_eval=False") is None
    assert "Scaled for 1 processes (train.reference_world_size was 4): total batch 8 -> 2" in log_of(out)
    assert "max_iter 1 -> 4" in log_of(out)
    saved = LazyConfig.load(os.path.join(out, "config.yaml"))
    assert saved.train.max_iter == 4 and saved.dataloader.train.total_batch_size == 2
    assert saved.train.reference_world_size == 1  # the saved config describes the run it made
