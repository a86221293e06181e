"""A backbone that pads to a fixed square (ViTDet) refuses a run whose resizes allow larger images (Detectron2 would
crop them without a word), naming the resize and the square in the config's style."""

import os

import pytest

from cascade_det.engine import Run, load_config
from cascade_det.engine.input_checks import largest_side
from cascade_det.errors import ConfigValueError
from cascade_det.modeling.backbones import vitdet_available

import detectron2.data.transforms as T

from ..conftest import ROOT

vitdet_only = pytest.mark.skipif(not vitdet_available(), reason="Detectron2 0.6 has no ViTDet: the main phase tests it")


def test_largest_side_follows_the_resizes_and_crops():
    lsj = [T.RandomFlip(), T.ResizeScale(0.1, 2.0, 1024, 1024), T.FixedSizeCrop((1024, 1024), pad=False)]
    assert largest_side(lsj) == 1024
    assert largest_side([T.ResizeScale(0.1, 2.0, 1024, 1024)]) == 2048
    assert largest_side([T.ResizeShortestEdge(800, 1333), T.RandomFlip()]) == 1333
    assert largest_side([T.ResizeShortestEdge(800, 1333), T.RandomCrop("absolute", (600, 600))]) == 1333
    assert largest_side([T.ResizeShortestEdge(800, 1333), T.RandomRotation([-10, 10])]) is None  # unknown effect
    assert largest_side([]) is None


@vitdet_only
def test_lazy_vitdet_run_whose_test_resize_exceeds_the_square_is_refused_before_it_runs():
    from ..test_convert_vitdet import RECIPE, tiny

    cfg = tiny(load_config(os.path.join(ROOT, RECIPE), ["train.device=cpu"]))
    Run.of(cfg).build_model()  # the resizes fit the 256 square
    cfg.dataloader.test.mapper.augmentations[0].max_size = 320
    with pytest.raises(
        ConfigValueError, match=r"dataloader.test.mapper.augmentations: .* 320 px .*\(model.backbone.square_pad=256\)"
    ):
        Run.of(cfg).build_model()


@vitdet_only
def test_yacs_vitdet_run_whose_training_resize_exceeds_the_square_names_the_yacs_keys():
    vit = ["MODEL.BACKBONE.NAME", "build_vitdet_backbone", "MODEL.VIT.EMBED_DIM", "32", "MODEL.VIT.NUM_HEADS", "2"]
    vit += ["MODEL.VIT.DEPTH", "2", "MODEL.VIT.WINDOW_BLOCK_INDEXES", "[0]", "MODEL.VIT.IMG_SIZE", "256"]
    path = os.path.join(ROOT, "configs/Shapes/cascade_rcnn_R_18_FPN.yaml")
    Run.of(load_config(path, vit)).build_model()
    with pytest.raises(ConfigValueError, match=r"INPUT.MAX_SIZE_TRAIN: .* 512 px .*\(MODEL.VIT.IMG_SIZE=256\)"):
        Run.of(load_config(path, vit + ["INPUT.MAX_SIZE_TRAIN", "512"])).build_model()


@vitdet_only
def test_detectron2s_own_default_predictor_refuses_a_yacs_vitdet_test_size_beyond_the_square():
    """Detectron2's DefaultPredictor (and DefaultTrainer, its tools) build the model through our yacs builder, which
    refuses what would be cropped: the test size, and the TTA size when TTA is on."""
    from detectron2.engine import DefaultPredictor

    vit = ["MODEL.BACKBONE.NAME", "build_vitdet_backbone", "MODEL.VIT.EMBED_DIM", "32", "MODEL.VIT.NUM_HEADS", "2"]
    vit += ["MODEL.VIT.DEPTH", "2", "MODEL.VIT.WINDOW_BLOCK_INDEXES", "[0]", "MODEL.VIT.IMG_SIZE", "256"]
    path = os.path.join(ROOT, "configs/Shapes/cascade_rcnn_R_18_FPN.yaml")
    DefaultPredictor(load_config(path, vit + ["MODEL.DEVICE", "cpu"]))  # the Shapes sizes (128) fit
    cfg = load_config(path, vit + ["MODEL.DEVICE", "cpu", "INPUT.MAX_SIZE_TEST", "400"])
    with pytest.raises(ConfigValueError, match=r"INPUT.MAX_SIZE_TEST: the test images can reach 400 px .*IMG_SIZE=256"):
        DefaultPredictor(cfg)
    cfg = load_config(path, vit + ["MODEL.DEVICE", "cpu", "TEST.AUG.ENABLED", "True", "TEST.AUG.MAX_SIZE", "300"])
    with pytest.raises(ConfigValueError, match=r"TEST.AUG.MAX_SIZE: the TTA images can reach 300 px"):
        DefaultPredictor(cfg)


@vitdet_only
def test_tta_sizes_beyond_the_square_are_refused_naming_the_tta_key():
    from ..test_convert_vitdet import RECIPE, tiny

    cfg = tiny(load_config(os.path.join(ROOT, RECIPE), ["train.device=cpu", "test.aug.max_size=4000"]))
    run = Run.of(cfg)
    with pytest.raises(ConfigValueError, match=r"test.aug.max_size: the TTA images can reach 4000 px"):
        run.with_tta(run.build_model())
