"""CascadeRCNNWithTTA: Detectron2's test-time augmentation on our cascades, each stage's own detections merged per
stage. With one augmentation (the test size, no flip) it must give exactly what the model gives without TTA."""

import os

import cv2
import pytest
import torch

from cascade_det.engine import load_config
from cascade_det.modeling import CascadeRCNNWithTTA, split_stage_detections, tta_config

from detectron2.config import instantiate

from ..conftest import QUICKSTART, ROOT, small_cascade_mask_model


def quickstart_model(weights):
    model = instantiate(load_config(os.path.join(ROOT, QUICKSTART), ["train.device=cpu"]).model)
    model.load_state_dict(torch.load(weights)["model"])
    return model.eval()


def inputs(shapes_image):
    image = cv2.imread(shapes_image)  # 128 x 128, the quickstart's test size
    return [{"image": torch.as_tensor(image.transpose(2, 0, 1).copy()), "height": 128, "width": 128}]


def assert_same(a, b, masks=False):
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=1e-4, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-6, rtol=0)
    assert torch.equal(a.pred_classes, b.pred_classes)
    if masks:
        assert torch.equal(a.pred_masks, b.pred_masks)


def run(model, batch, stage_detections):
    """One image's detections by `model` (a detector, or a TTA wrapper of one)."""
    heads = getattr(model, "model", model).roi_heads
    heads.return_stage_detections = stage_detections
    try:
        with torch.no_grad():
            return model(batch)[0]["instances"]
    finally:
        heads.return_stage_detections = False


@pytest.mark.parametrize("masks", [False, True], ids=["box", "mask"])
def test_one_augmentation_gives_the_models_own_and_each_stages_detections(quickstart_weights, shapes_image, masks):
    model = small_cascade_mask_model() if masks else quickstart_model(quickstart_weights)
    tta = CascadeRCNNWithTTA(tta_config(model, [128], 128, flip=False), model)
    batch = inputs(shapes_image)
    want, got = run(model, batch, True), run(tta, batch, True)
    (want_own, want_stages), (got_own, got_stages) = split_stage_detections(want, 3), split_stage_detections(got, 3)
    assert_same(got_own, want_own, masks)
    assert len(got_stages) == 3
    for want_stage, got_stage in zip(want_stages, got_stages):
        assert_same(got_stage, want_stage)
        if masks:
            assert not got_stage.pred_masks.any()  # stage rows carry boxes, scores and classes


def test_flip_and_scales_merge_into_detections_of_the_image_per_stage(quickstart_weights, shapes_image):
    model = quickstart_model(quickstart_weights)
    tta = CascadeRCNNWithTTA(tta_config(model, [96, 128, 160], 400, flip=True), model)
    batch = inputs(shapes_image)
    plain = run(tta, batch, False)
    assert not plain.has("stage") and 0 < len(plain) <= 100  # TEST.DETECTIONS_PER_IMAGE of the model's predictor
    own, stages = split_stage_detections(run(tta, batch, True), 3)
    assert_same(own, plain)  # stage rows do not change the model's own merged detections
    for stage in [own, *stages]:
        boxes = stage.pred_boxes.tensor
        assert len(stage) > 0 and (boxes >= 0).all() and (boxes <= 128).all()
    untransformed = run(model, batch, False)
    assert not torch.equal(plain.scores[:10], untransformed.scores[:10])  # the augmentations did take part


def test_tta_settings_come_from_the_config_in_either_style():
    lazy = load_config(os.path.join(ROOT, QUICKSTART), ["test.aug.enabled=True", "test.aug.flip=False"])
    yacs = load_config(os.path.join(ROOT, "configs/Shapes/cascade_rcnn_R_18_FPN.yaml"), ["TEST.AUG.ENABLED", "True"])
    from cascade_det.engine import Run

    a, b = Run.of(lazy, world_size=1).settings, Run.of(yacs, world_size=1).settings
    assert a.tta and b.tta and a.tta_min_sizes == b.tta_min_sizes == (96, 128, 160) and a.tta_max_size == 400
    assert a.tta_flip is False and b.tta_flip is True


def test_detectron2s_own_tta_wrapper_runs_our_cascade(quickstart_weights, shapes_image):
    """Detectron2's GeneralizedRCNNWithTTA itself, on a model with our heads: at one augmentation it gives the
    model's detections, as ours does."""
    from detectron2.modeling import GeneralizedRCNNWithTTA

    model = quickstart_model(quickstart_weights)
    tta = GeneralizedRCNNWithTTA(tta_config(model, [128], 128, flip=False), model)
    batch = inputs(shapes_image)
    assert_same(run(tta, batch, False), run(model, batch, False))


def test_predictor_with_tta_predicts_through_the_tta_wrapper(quickstart_weights, shapes_image):
    from cascade_det import Predictor

    plain = Predictor(os.path.join(ROOT, QUICKSTART), quickstart_weights, device="cpu")
    tta = Predictor(os.path.join(ROOT, QUICKSTART), quickstart_weights, device="cpu", tta=True)
    assert isinstance(tta.tta_model, CascadeRCNNWithTTA) and plain.tta_model is None
    own, stages = tta(shapes_image, per_stage=True)
    assert len(stages) == 3 and all(len(s) > 0 for s in stages)
    assert_same(own, tta(shapes_image))  # the config's sizes (96, 128, 160) and flip
    assert not torch.equal(own.scores[:10], plain(shapes_image).scores[:10])
