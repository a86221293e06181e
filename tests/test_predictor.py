"""`cascade_det.Predictor`: from a config and a checkpoint to detections in the image's pixels, for LazyConfig and
yacs users alike, one image or a batch, with each stage's own detections on request."""

import os

import cv2
import numpy as np
import pytest
import torch

from cascade_det import Predictor
from cascade_det.data.shapes import SHAPE_CLASSES

from .conftest import QUICKSTART, ROOT

YACS = os.path.join(ROOT, "configs/Shapes/cascade_rcnn_R_18_FPN.yaml")
LAZY = os.path.join(ROOT, QUICKSTART)


@pytest.fixture(scope="module")
def predictor(quickstart_weights):
    return Predictor(LAZY, quickstart_weights, device="cpu")


def assert_same_instances(a, b):
    assert len(a) == len(b) > 0
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor, atol=1e-3, rtol=0)
    torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
    assert torch.equal(a.pred_classes, b.pred_classes)


def test_lazy_and_yacs_quickstart_configs_predict_the_same_detections(predictor, quickstart_weights, shapes_image):
    from_yacs = Predictor(YACS, quickstart_weights, device="cpu")
    assert_same_instances(predictor(shapes_image), from_yacs(shapes_image))


def test_detections_are_in_the_input_images_pixels_whatever_its_size(predictor, shapes_image):
    image = cv2.imread(shapes_image)
    large = cv2.resize(image, (256, 192))  # the config resizes to 128 for the model; boxes come back at 256 x 192
    instances = predictor(large)
    assert instances.image_size == (192, 256)
    boxes = instances.pred_boxes.tensor
    assert boxes[:, 2].max() <= 256 and boxes[:, 3].max() <= 192 and boxes[:, 2].max() > 128


def test_a_path_a_bgr_array_an_rgb_array_and_a_batch_give_the_same_detections(predictor, shapes_image):
    bgr = cv2.imread(shapes_image)
    from_path = predictor(shapes_image)
    assert_same_instances(from_path, predictor(bgr))
    assert_same_instances(from_path, predictor(np.ascontiguousarray(bgr[:, :, ::-1]), image_format="RGB"))
    batch = predictor([shapes_image, bgr])
    assert isinstance(batch, list) and len(batch) == 2
    for instances in batch:
        assert_same_instances(from_path, instances)


def test_per_stage_gives_each_stages_own_detections_beside_the_unchanged_model_output(predictor, shapes_image):
    own, stages = predictor(shapes_image, per_stage=True)
    assert len(stages) == 3 and all(len(s) > 0 for s in stages)
    assert not own.has("stage") and all(not s.has("stage") for s in stages)
    assert_same_instances(own, predictor(shapes_image))
    # The last stage's own detections are what the model outputs when it scores by that stage alone.
    heads = predictor.model.roi_heads
    configured, heads.test_score_ensemble = heads.test_score_ensemble, "last"
    try:
        assert_same_instances(stages[2], predictor(shapes_image))
    finally:
        heads.test_score_ensemble = configured
    assert predictor.model.roi_heads.return_stage_detections is False  # asked per call, reset after


def test_as_dict_gives_numpy_arrays_and_the_datasets_class_names(predictor, shapes_image):
    out = predictor.as_dict(predictor(shapes_image))
    assert set(out) == {"boxes", "scores", "classes", "class_names"}
    assert out["boxes"].shape == (len(out["scores"]), 4) and out["boxes"].dtype == np.float32
    assert predictor.class_names == list(SHAPE_CLASSES)  # the embedded dataset's own names
    assert list(out["class_names"]) == [SHAPE_CLASSES[c] for c in out["classes"]]


def test_score_thresh_keeps_only_detections_scoring_at_least_that(quickstart_weights, shapes_image):
    all_of_them = Predictor(LAZY, quickstart_weights, device="cpu")(shapes_image)
    threshold = float(all_of_them.scores.median())
    kept = Predictor(LAZY, quickstart_weights, device="cpu", score_thresh=threshold)(shapes_image)
    assert 0 < len(kept) < len(all_of_them) and bool((kept.scores >= threshold).all())


def test_bad_inputs_are_refused_with_the_thing_to_fix(predictor, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.jpg"):
        predictor(str(tmp_path / "nowhere.jpg"))
    with pytest.raises(ValueError, match=r"has shape \(32, 32, 2\): expected an image array \(H, W, 3\)"):
        predictor(np.zeros((32, 32, 2), np.uint8))
    with pytest.raises(ValueError, match="image_format"):
        predictor(np.zeros((32, 32, 3), np.uint8), image_format="YUV")
    with pytest.raises(ValueError, match="train.init_checkpoint"):
        Predictor(LAZY, "", device="cpu")


def test_per_stage_on_a_model_without_a_cascade_says_so(quickstart_weights, shapes_image, tmp_path):
    faster = os.path.join(ROOT, "configs/Shapes/faster_rcnn_R_18_FPN.py")
    from cascade_det.engine import load_config

    from detectron2.config import instantiate

    weights = str(tmp_path / "faster.pth")
    model = instantiate(load_config(faster, ["train.device=cpu"]).model)
    torch.save({"model": model.state_dict()}, weights)
    predictor = Predictor(faster, weights, device="cpu")
    assert len(predictor(shapes_image)) > 0
    with pytest.raises(ValueError, match="per_stage=True needs a cascade model"):
        predictor(shapes_image, per_stage=True)
