"""cascade_det's one table of options: yacs keys, LazyConfig keys and the heads' defaults come from it."""

import inspect

from omegaconf import OmegaConf

import cascade_det
from cascade_det.config import CASCADE_HEAD, OPTIONS, add_cascade_config, lazy_train_defaults, yacs_option
from cascade_det.modeling import CascadeRCNNROIHeads

from detectron2.config import get_cfg


def test_every_option_of_ours_is_a_yacs_key_with_its_default():
    cfg = add_cascade_config(get_cfg())
    for option in OPTIONS:
        if not option.detectron2:
            assert yacs_option(cfg, option.yacs) == option.default, option.yacs


def test_the_detectron2_keys_of_the_table_are_detectron2s_own():
    from detectron2 import model_zoo

    yacs = get_cfg()  # Detectron2's defaults alone: the table must not invent a Detectron2 key
    lazy = model_zoo.get_config("common/train.py")
    for option in OPTIONS:
        if not option.detectron2:
            continue
        if option.yacs:
            node = yacs
            for part in option.yacs.split("."):
                assert part in node, option.yacs
                node = node[part]
        if option.lazy.startswith("train.") and option.setting != "seed" and option.setting != "cudnn_benchmark":
            assert OmegaConf.select(lazy, option.lazy, default=KeyError) is not KeyError, option.lazy


def test_a_config_without_our_keys_reads_the_defaults():
    cfg = get_cfg()  # a user's own Detectron2 config
    assert yacs_option(cfg, f"{CASCADE_HEAD}.STAGE_SAMPLING") == "relabel"
    assert yacs_option(cfg, "TEST.PER_STAGE_EVAL") is False


def test_lazyconfig_run_settings_and_heads_defaults_come_from_the_table():
    train = lazy_train_defaults()
    assert train["per_stage_eval"] is False and train["speed"] == {
        "fold_frozen_bn": True,
        "channels_last_inference": True,
    }
    defaults = {o.yacs.rsplit(".", 1)[1].lower(): o.default for o in OPTIONS if (o.yacs or "").startswith(CASCADE_HEAD)}
    signature = inspect.signature(CascadeRCNNROIHeads.__init__)
    for argument in ("stage_sampling", "test_score_ensemble", "mask_train_stage", "return_stage_detections"):
        assert signature.parameters[argument].default == defaults[argument], argument
    assert cascade_det.__version__
