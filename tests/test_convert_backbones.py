"""Swin Transformer and ConvNeXt Cascade Mask R-CNN checkpoints of MMDetection 3.3.0 convert to our recipes' models,
which then predict what MMDetection itself predicts (MMDetection's ConvNeXt cascade config, as shipped in its wheel,
with MMPretrain's ConvNeXt; the same config with MMDetection's own SwinTransformer for Swin: the Swin-Transformer-
Object-Detection recipe has the same heads). Tiny backbones and heads keep it fast; the image is not a multiple of
the window at any stage, so the padding of the detection versions is exercised."""

import os

import mmdet_reference  # benchmarks/ (tests/conftest.py puts it on the path)
import pytest
import torch

import cascade_det  # noqa: F401
from cascade_det.backbone_layouts import convert_backbone
from cascade_det.checkpoint import SafeDetectionCheckpointer
from cascade_det.convert import convert_known_layouts
from cascade_det.engine import load_config

from detectron2.config import instantiate
from detectron2.layers import ShapeSpec

from .conftest import ROOT
from .test_convert import mmengine_checkpoint, randomize_like_a_trained_model, shapes_image

MMDET_CONFIG = "convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py"
CONV, FC, MASK = 32, 64, 32  # the heads' widths in this test (the recipes': 256, 1024, 256)
SWIN = {"embed_dim": 32, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 4, 8]}
CONVNEXT = {"depths": [1, 1, 2, 1], "dims": [16, 32, 64, 128]}
CASES = {
    "swin": (
        "configs/COCO/cascade_mask_rcnn_swin_T_FPN_3x.py",
        SWIN,
        {
            "type": "SwinTransformer",
            "embed_dims": SWIN["embed_dim"],
            "depths": SWIN["depths"],
            "num_heads": SWIN["num_heads"],
            "window_size": 7,
            "mlp_ratio": 4,
            "qkv_bias": True,
            "drop_path_rate": 0.2,
            "patch_norm": True,
            "out_indices": (0, 1, 2, 3),
            "convert_weights": True,
        },
        [SWIN["embed_dim"] * 2**i for i in range(4)],
    ),
    "convnext": (
        "configs/COCO/cascade_mask_rcnn_convnext_T_FPN_3x.py",
        CONVNEXT,
        {"arch": {"depths": CONVNEXT["depths"], "channels": CONVNEXT["dims"]}},
        CONVNEXT["dims"],
    ),
}


def mmdet_cascade(backbone: dict, channels):
    """MMDetection's ConvNeXt cascade config with `backbone` (replacing it, or updating it when it has no type) and
    the tiny head widths."""
    cfg = mmdet_reference.load_config(MMDET_CONFIG)
    if "type" in backbone:
        cfg.model.backbone = backbone
    else:
        cfg.model.backbone.update(backbone)
    cfg.model.neck.in_channels = list(channels)
    for head in cfg.model.roi_head.bbox_head:
        head.update(conv_out_channels=CONV, fc_out_channels=FC)
    cfg.model.roi_head.mask_head.conv_out_channels = MASK
    return mmdet_reference.build_cascade_rcnn(cfg=cfg)


def our_recipe(config: str, backbone: dict, overrides=()):
    """Our recipe's config with the same tiny backbone and heads."""
    cfg = load_config(os.path.join(ROOT, config), list(overrides))
    cfg.model.backbone.bottom_up.update(backbone)
    for head, predictor in zip(cfg.model.roi_heads.box_heads, cfg.model.roi_heads.box_predictors):
        head.update(conv_dims=[CONV] * 4, fc_dims=[FC])
        predictor.input_shape = ShapeSpec(channels=FC)
    for head in cfg.model.roi_heads.mask_head:
        head.conv_dims = [MASK] * 5
    return cfg


def our_cascade(config: str, backbone: dict):
    """Our recipe's model with the same tiny backbone and heads."""
    return instantiate(our_recipe(config, backbone).model).eval()


def calm_regression(model, scale: float = 0.25) -> None:
    """The box regressors' weights x `scale`: deltas of the size a trained cascade predicts. (The random spread of
    `randomize_like_a_trained_model` gives each stage deltas of ~0.5 / target_std, which magnify fp32 rounding
    (features equal to 2e-6 relative) into 2e-3 px after three stages; 1e-3 with this scale.)"""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".fc_reg." in name:
                p.mul_(scale)


@pytest.fixture(scope="module", params=sorted(CASES))
def converted_pair(request, tmp_path_factory):
    config, ours_backbone, mmdet_backbone, channels = CASES[request.param]
    torch.manual_seed(0)
    reference = mmdet_cascade(mmdet_backbone, channels)
    randomize_like_a_trained_model(reference)
    calm_regression(reference)
    path = str(tmp_path_factory.mktemp(request.param) / "epoch_36.pth")
    mmengine_checkpoint(reference, path)
    ours = our_cascade(config, ours_backbone)
    checkpointer = SafeDetectionCheckpointer(ours)
    checkpointer.load(path)
    return request.param, reference, ours, checkpointer.last_load_report, path


def test_mmdetection_checkpoint_loads_with_every_tensor_matched(converted_pair):
    _, _, ours, report, _ = converted_pair
    assert not report["missing"] and not report["unexpected"] and not report["incorrect_shapes"]
    assert len(report["matched"]) == len([k for k in ours.state_dict() if not k.endswith("num_batches_tracked")])


def test_converted_model_predicts_what_mmdetection_predicts(converted_pair):
    """Same 100 boxes within 1e-3 px (+ 1e-5 of the coordinate: timm's layers round differently from MMDetection's and
    MMPretrain's, the FPN features differ by 2e-6 of their size, and three stages of regression carry it into the
    boxes), scores within 1e-4, same classes and masks, on a 320x416 image (stride-4 map 80x104: padded to the
    window at every Swin stage)."""
    kind, reference, ours, _, _ = converted_pair
    image = shapes_image()
    with torch.no_grad():
        expected = mmdet_reference.predict(reference, torch.from_numpy(image).permute(2, 0, 1).contiguous())
        rgb = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1)
        got = ours([{"image": rgb, "height": image.shape[0], "width": image.shape[1]}])[0]["instances"]
    assert len(expected.bboxes) == 100 and len(got) == 100, kind
    torch.testing.assert_close(got.pred_boxes.tensor, expected.bboxes, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-4)
    assert torch.equal(got.pred_classes, expected.labels)
    assert len(set(got.pred_classes.tolist())) > 1
    assert expected.masks.any()
    assert (got.pred_masks != expected.masks.bool()).float().mean() < 1e-4


def test_predictor_and_analyze_run_the_recipes_on_mmdetections_checkpoint(converted_pair):
    """The rest of the project on these recipes: `Predictor` with the recipe and MMDetection's checkpoint, on a BGR
    image, gives what the converted model gives on that image resized by the recipe's test resize (here 256 / 416 px),
    and each of the 3 stages' own detections; `analyze` counts the backbone with its FPN, the RPN, and each stage's
    box and mask heads, adding up to the model's parameters."""
    import copy

    from cascade_det import Predictor
    from cascade_det.analyze import analyze

    from detectron2.data import transforms as T

    kind, _, ours, _, path = converted_pair
    config, backbone, *_ = CASES[kind]
    resize = ["dataloader.test.mapper.augmentations.0.short_edge_length=256"]
    resize.append("dataloader.test.mapper.augmentations.0.max_size=416")
    predictor = Predictor(our_recipe(config, backbone, ["train.device=cpu", *resize]), path, device="cpu")
    image = shapes_image()  # 320 x 416, BGR
    got, stages = predictor(image, per_stage=True)
    resized = T.ResizeShortestEdge(256, 416).get_transform(image).apply_image(image)
    rgb = torch.from_numpy(resized[:, :, ::-1].copy()).permute(2, 0, 1)
    with torch.no_grad():
        expected = ours([{"image": rgb, "height": image.shape[0], "width": image.shape[1]}])[0]["instances"]
    assert len(got) == len(expected) > 0, kind
    torch.testing.assert_close(got.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=1e-3)
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-4)
    assert torch.equal(got.pred_masks, expected.pred_masks)
    assert len(stages) == 3 and all(len(s) > 0 for s in stages)

    report = analyze(copy.deepcopy(ours), 128, 160)
    total = report.pop("total")
    assert list(report) == ["backbone", "RPN"] + [f"stage {t} {h}" for t in range(3) for h in ("box", "mask")]
    assert sum(r["parameters"] for r in report.values()) == total["parameters"]
    assert report["backbone"]["gflops"] > 0 and report["stage 2 box"]["gflops"] > 0


def official_convnext_keys(depths):
    """The parameter names of facebookresearch/ConvNeXt's ImageNet files for these depths."""
    keys = [f"downsample_layers.{i}.{part}.{p}" for i in range(4) for part in (0, 1) for p in ("weight", "bias")]
    for i, depth in enumerate(depths):
        for j in range(depth):
            keys.append(f"stages.{i}.{j}.gamma")
            keys += [
                f"stages.{i}.{j}.{m}.{p}" for m in ("dwconv", "norm", "pwconv1", "pwconv2") for p in ("weight", "bias")
            ]
    return keys + ["norm.weight", "norm.bias", "head.weight", "head.bias"]


def official_swin_keys(depths):
    """The parameter (and buffer) names of the official Swin ImageNet files (and Swin-Transformer-Object-Detection's
    backbones, and Detectron2 main's SwinTransformer) for these depths."""
    keys = [f"patch_embed.{m}.{p}" for m in ("proj", "norm") for p in ("weight", "bias")]
    for i, depth in enumerate(depths):
        for j in range(depth):
            block = f"layers.{i}.blocks.{j}"
            keys += [f"{block}.attn.relative_position_bias_table", f"{block}.attn.relative_position_index"]
            parts = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
            keys += [f"{block}.{m}.{p}" for m in parts for p in ("weight", "bias")]
        if i < len(depths) - 1:
            keys += [f"layers.{i}.downsample.norm.weight", f"layers.{i}.downsample.norm.bias"]
            keys.append(f"layers.{i}.downsample.reduction.weight")
    return keys + ["norm.weight", "norm.bias", "head.weight", "head.bias"]


@pytest.mark.parametrize("network", ["swin", "convnext"])
def test_official_layout_is_renamed_as_timms_own_converter_renames_it(network):
    """The official files' names go where timm's converter for them (`checkpoint_filter_fn`) puts them, key by key:
    an independent reading of the same layout (ours must also drop what our backbones recompute or lack)."""
    import timm.models.convnext as timm_convnext
    import timm.models.swin_transformer as timm_swin

    from cascade_det.modeling import ConvNeXt, SwinTransformer

    if network == "swin":
        keys, layout, module = official_swin_keys(SWIN["depths"]), "swin-original", timm_swin
        timm_model = timm_swin.SwinTransformer(**SWIN, window_size=7)
        ours = SwinTransformer(**SWIN)
    else:
        keys, layout, module = official_convnext_keys(CONVNEXT["depths"]), "convnext", timm_convnext
        timm_model = timm_convnext.ConvNeXt(**CONVNEXT)
        ours = ConvNeXt(**CONVNEXT)
    timm_shapes = timm_model.state_dict()
    official, ours_names = {}, {}
    for key in keys:
        renamed = list(convert_backbone({key: torch.zeros(0)}, layout))
        ours_names[key] = renamed[0] if renamed else None
        shape = timm_shapes[renamed[0]].shape if renamed else (1,)
        official[key] = torch.zeros(shape)
    assert list(convert_backbone(dict(official))) == [n for n in ours_names.values() if n]  # the layout is recognised
    timm_names = module.checkpoint_filter_fn(dict(official), timm_model)
    kept = {k for k in timm_names if not k.startswith(("head.", "norm."))}
    assert kept == {n for n in ours_names.values() if n}
    dropped = {k for k, n in ours_names.items() if n is None}
    assert dropped <= {k for k in keys if k.startswith(("head.", "norm.")) or "relative_position_index" in k}
    missing, unexpected = ours.load_state_dict(convert_backbone(dict(official)), strict=False)
    assert not unexpected and all(k.startswith("norm") for k in missing)  # only the detection output norms
    # Given as a checkpoint to load (the official files hold {"model": ...}), it is recognised and renamed.
    loaded = convert_known_layouts({"model": dict(official)})["model"]
    assert set(loaded) == {"backbone.bottom_up." + n for n in ours_names.values() if n}


def test_mmpretrain_imagenet_checkpoint_loads_into_the_convnext_recipe(tmp_path):
    """MMDetection's ConvNeXt config starts from MMPretrain's ImageNet file: an mmengine checkpoint whose
    "state_dict" holds backbone.* (and the classifier's head.*). It loads into our recipe with every backbone
    tensor matched (the classifier dropped) and the same values."""
    mmdet_reference.load_config(MMDET_CONFIG)  # registers MMPretrain's models
    from mmpretrain.models import ConvNeXt as MMPretrainConvNeXt

    torch.manual_seed(0)
    backbone = MMPretrainConvNeXt(
        arch={"depths": CONVNEXT["depths"], "channels": CONVNEXT["dims"]}, gap_before_final_norm=True
    )
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state["head.fc.weight"], state["head.fc.bias"] = torch.zeros(1000, 128), torch.zeros(1000)
    path = str(tmp_path / "convnext-tiny_in1k.pth")
    torch.save({"meta": {"epoch": 300}, "state_dict": state}, path)
    ours = our_cascade(CASES["convnext"][0], CONVNEXT)
    checkpointer = SafeDetectionCheckpointer(ours)
    checkpointer.load(path)
    report = checkpointer.last_load_report
    bottom_up = {k for k in ours.state_dict() if k.startswith("backbone.bottom_up.")}
    # A classifier has the last stage's norm only; the detection output norms of stages 0-2 start fresh.
    fresh = {f"backbone.bottom_up.norm{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    assert bottom_up - set(report["matched"]) == fresh
    assert not report["unexpected"] and not report["incorrect_shapes"]
    conv = ours.backbone.bottom_up.stages[2].blocks[1].conv_dw.weight
    torch.testing.assert_close(conv, state["backbone.stages.2.1.depthwise_conv.weight"])
