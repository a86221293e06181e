"""ViTDet: Detectron2 main's own Cascade Mask R-CNN ViTDet (built from `projects/ViTDet`'s config as shipped in the
snapshot) and our recipe predict the same on the same weights, saved as Detectron2's model zoo saves them; MAE's
ImageNet file loads into our recipe. Detectron2 0.6 has no ViTDet: there, the recipe's error is what is tested, and
the rest runs in the main phase of .ci/run. Tiny widths and depths; the image is no multiple of the 14-patch window."""

import os
import pickle
import sys

import pytest
import torch

import cascade_det  # noqa: F401
from cascade_det.checkpoint import SafeDetectionCheckpointer
from cascade_det.engine import load_config
from cascade_det.modeling.backbones import vitdet_available

from detectron2.config import LazyConfig, instantiate
from detectron2.layers import ShapeSpec

from .conftest import ROOT
from .test_convert import shapes_image

RECIPE = "configs/COCO/cascade_mask_rcnn_vitdet_B_100ep.py"
# projects/ViTDet's config in the snapshot .ci/env.sh extracts beside Detectron2 main.
DETECTRON2_VITDET = os.path.join(
    sys.prefix, "detectron2-main-src", "projects", "ViTDet", "configs", "COCO", "cascade_mask_rcnn_vitdet_b_100ep.py"
)
VIT = {"embed_dim": 64, "depth": 3, "num_heads": 2, "window_block_indexes": [0, 2], "img_size": 256}
CONV, FC = 32, 64  # the heads' widths in this test (the recipes': 256, 1024)

main_only = pytest.mark.skipif(not vitdet_available(), reason="Detectron2 0.6 has no ViTDet: the main phase tests it")


def tiny(cfg):
    """The ViTDet config `cfg` with a 3-block ViT of 64 channels padding to 256 px, its data resized to fit that
    square, and narrow heads."""
    side = VIT["img_size"]
    cfg.model.backbone.net.update(VIT)
    cfg.model.backbone.square_pad = side
    _, resize, crop = cfg.dataloader.train.mapper.augmentations
    resize.update(target_height=side, target_width=side)
    crop.crop_size = (side, side)
    cfg.dataloader.test.mapper.augmentations[0].update(short_edge_length=side, max_size=side)
    for head, predictor in zip(cfg.model.roi_heads.box_heads, cfg.model.roi_heads.box_predictors):
        head.update(conv_dims=[CONV] * 4, fc_dims=[FC])
        predictor.input_shape = ShapeSpec(channels=FC)
    cfg.model.roi_heads.mask_head.conv_dims = [CONV] * 5
    return cfg


def spread_heads(model) -> None:
    """Classifiers, RPN and mask logits of a trained model's spread (at default init 80 classes all score below the
    0.05 threshold), small box deltas."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(part in name for part in (".cls_score.", ".objectness_logits.", "mask_head.predictor.")):
                p.copy_(torch.randn(p.shape, generator=g) * (0.3 if name.endswith("weight") else 0.5))
            elif ".bbox_pred." in name or ".anchor_deltas." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.01)


@pytest.fixture(scope="module")
def vitdet_pair(tmp_path_factory):
    """(Detectron2's ViTDet cascade with random weights, our recipe loaded from its .pkl, the load report, the
    .pkl's path)."""
    if not os.path.exists(DETECTRON2_VITDET):
        pytest.fail(f"{DETECTRON2_VITDET} is missing: .ci/env.sh extracts it with Detectron2 main")
    torch.manual_seed(0)
    theirs = instantiate(tiny(LazyConfig.load(DETECTRON2_VITDET)).model).eval()
    spread_heads(theirs)
    path = str(tmp_path_factory.mktemp("vitdet") / "model_final_435fa9.pkl")
    with open(path, "wb") as f:  # what Detectron2's model zoo publishes: numpy arrays in a pickle
        pickle.dump({"model": {k: v.numpy() for k, v in theirs.state_dict().items()}, "__author__": "Detectron2"}, f)
    ours = instantiate(tiny(load_config(os.path.join(ROOT, RECIPE))).model).eval()
    checkpointer = SafeDetectionCheckpointer(ours)
    checkpointer.load(path)
    return theirs, ours, checkpointer.last_load_report, path


@main_only
def test_detectron2_vitdet_checkpoint_loads_as_it_is_with_every_tensor_matched(vitdet_pair):
    _, ours, report, _ = vitdet_pair
    assert not report["missing"] and not report["unexpected"] and not report["incorrect_shapes"]
    assert len(report["matched"]) == len(ours.state_dict())


@main_only
def test_our_vitdet_recipe_predicts_what_detectron2s_vitdet_cascade_predicts(vitdet_pair):
    """Same 100 boxes within 1e-3 px, scores within 1e-4, same classes and masks, on a 192x240 image (12x15 patches:
    padded to the 256 square, then to two 14-patch windows a side)."""
    theirs, ours, *_ = vitdet_pair
    image = shapes_image(192, 240)
    rgb = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1)
    inputs = [{"image": rgb, "height": image.shape[0], "width": image.shape[1]}]
    with torch.no_grad():
        expected, got = theirs(inputs)[0]["instances"], ours(inputs)[0]["instances"]
    assert len(expected) == len(got) == 100
    torch.testing.assert_close(got.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=1e-3)
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-4)
    assert torch.equal(got.pred_classes, expected.pred_classes) and len(set(got.pred_classes.tolist())) > 1
    assert expected.pred_masks.any() and torch.equal(got.pred_masks, expected.pred_masks)


@main_only
def test_predictor_runs_the_vitdet_recipe_as_detectron2s_model_sees_the_image(vitdet_pair):
    """`Predictor` with the recipe and Detectron2's checkpoint on a 300x500 BGR image: the test resize (longer side to
    the square, here 256) and RGB order applied, so Detectron2's own model on that resized RGB image gives the same
    detections; per-stage detections come from the 3 stages."""
    from cascade_det import Predictor

    from detectron2.data import transforms as T

    theirs, _, _, path = vitdet_pair
    cfg, side = tiny(load_config(os.path.join(ROOT, RECIPE), ["train.device=cpu"])), VIT["img_size"]
    predictor = Predictor(cfg, path, device="cpu")
    image = shapes_image(300, 500)
    got, stages = predictor(image, per_stage=True)
    resized = T.ResizeShortestEdge(short_edge_length=side, max_size=side).get_transform(image).apply_image(image)
    assert resized.shape[:2] == (154, 256)
    rgb = torch.from_numpy(resized[:, :, ::-1].copy()).permute(2, 0, 1)
    with torch.no_grad():
        expected = theirs([{"image": rgb, "height": 300, "width": 500}])[0]["instances"]
    assert len(got) == len(expected) > 0
    torch.testing.assert_close(got.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=1e-3)
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-4)
    assert len(stages) == 3 and all(len(s) > 0 for s in stages)


@main_only
def test_analyze_counts_the_vitdet_cascade_per_component(vitdet_pair):
    """`cascade_det.analyze` on the ViTDet recipe: backbone (ViT and simple feature pyramid), RPN, the 3 stages' box
    heads and the one mask head, whose parameters add up to the model's and whose FLOPs are counted."""
    import copy

    from cascade_det.analyze import analyze

    _, ours, _, _ = vitdet_pair
    report = analyze(copy.deepcopy(ours), 192, 256)
    total = report.pop("total")
    assert list(report) == ["backbone", "RPN", "stage 0 box", "stage 1 box", "stage 2 box", "mask head"]
    parameters = sum(p.numel() for p in ours.parameters())
    assert sum(r["parameters"] for r in report.values()) == total["parameters"] == parameters
    assert all(r["gflops"] > 0 for r in report.values())


@main_only
def test_mae_imagenet_file_loads_into_the_vitdet_recipe(tmp_path):
    """MAE's `mae_pretrain_vit_*.pth` ({"model": timm ViT names, class token, final norm}) is recognised: every ViT
    parameter but the relative-position tables (not pre-trained; zero, as in ViTDet) comes from the file, the
    class token and final norm are dropped, and the log says what was read."""
    from timm.models.vision_transformer import VisionTransformer

    mae = VisionTransformer(
        img_size=224, patch_size=16, embed_dim=VIT["embed_dim"], depth=VIT["depth"], num_heads=VIT["num_heads"]
    )
    weights = {k: v for k, v in mae.state_dict().items() if not k.startswith("head.")}  # MAE keeps no classifier
    path = str(tmp_path / "mae_pretrain_vit_base.pth")
    torch.save({"model": weights}, path)
    ours = instantiate(tiny(load_config(os.path.join(ROOT, RECIPE))).model)
    checkpointer = SafeDetectionCheckpointer(ours)
    checkpointer.load(path)
    report, state = checkpointer.last_load_report, ours.state_dict()
    net = {k for k in state if k.startswith("backbone.net.")}
    assert set(report["matched"]) == {k for k in net if ".rel_pos_" not in k}
    assert not report["unexpected"] and not report["incorrect_shapes"]
    for key in report["matched"]:
        torch.testing.assert_close(state[key], weights[key[len("backbone.net.") :]], rtol=0, atol=0, msg=key)
    assert all(not state[k].any() for k in net if ".rel_pos_" in k)


@pytest.mark.skipif(vitdet_available(), reason="this Detectron2 has ViTDet (the tests above run instead)")
def test_vitdet_recipe_on_detectron2_0_6_says_it_needs_detectron2_main():
    with pytest.raises(ImportError, match="ViTDet's backbone .* is in Detectron2 main, not in Detectron2 0.6"):
        load_config(os.path.join(ROOT, RECIPE))
