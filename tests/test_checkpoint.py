"""SafeDetectionCheckpointer: what a load reports, Detectron2 / torchvision / MSRA layouts, atomic saving."""

import os
import pickle

import numpy as np
import torch

import cascade_det
from cascade_det.checkpoint import SafeDetectionCheckpointer


def test_detectron2_model_zoo_cascade_mask_checkpoint_loads_completely_and_predicts_the_same(tmp_path):
    """A checkpoint in Detectron2's model-zoo layout (.pkl of numpy arrays, as its published Cascade Mask R-CNN
    R50-FPN files are) of Detectron2's built-in model loads into ours (its yacs config with our heads named, and
    configs/COCO-Detectron2) with every tensor matched, and both predict the same boxes, scores, classes, masks."""
    from cascade_det.engine import load_config

    from detectron2 import model_zoo
    from detectron2.config import get_cfg, instantiate
    from detectron2.modeling import build_model

    from .conftest import ROOT

    def cfg_for(heads):
        cfg = cascade_det.add_cascade_config(get_cfg())
        cfg.merge_from_file(model_zoo.get_config_file("Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml"))
        cfg.MODEL.DEVICE = "cpu"
        cfg.MODEL.ROI_HEADS.NAME = heads
        cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
        cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 96, 128
        return cfg

    torch.manual_seed(0)
    builtin = build_model(cfg_for("CascadeROIHeads")).eval()
    path = str(tmp_path / "model_final_cascade_mask.pkl")
    with open(path, "wb") as f:
        weights = {k: v.numpy() for k, v in builtin.state_dict().items()}
        pickle.dump({"model": weights, "__author__": "Detectron2 Model Zoo"}, f)
    yacs_model = build_model(cfg_for("CascadeRCNNROIHeads"))
    lazy = load_config(os.path.join(ROOT, "configs/COCO-Detectron2/cascade_mask_rcnn_R_50_FPN_1x.py"))
    for predictor in lazy.model.roi_heads.box_predictors:
        predictor.test_score_thresh = 0.0
    # Near the pixel mean: a random-init R-50 with frozen BN amplifies larger inputs into overflowing logits.
    image = torch.tensor(cfg_for("x").MODEL.PIXEL_MEAN)[:, None, None] + torch.randn(3, 96, 128) * 2
    with torch.no_grad():
        expected = builtin([{"image": image}])[0]["instances"]
    assert len(expected) > 10
    for ours in (yacs_model.eval(), instantiate(lazy.model).eval()):
        checkpointer = SafeDetectionCheckpointer(ours)
        checkpointer.load(path)
        report = checkpointer.last_load_report
        assert not report["missing"] and not report["unexpected"] and not report["incorrect_shapes"]
        assert len(report["matched"]) == len(ours.state_dict())
        with torch.no_grad():
            got = ours([{"image": image}])[0]["instances"]
        torch.testing.assert_close(got.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=1e-4)
        torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-5)
        assert torch.equal(got.pred_classes, expected.pred_classes)
        torch.testing.assert_close(got.pred_masks.float(), expected.pred_masks.float())


def test_torchvision_imagenet_resnet50_file_initialises_the_torchvision_style_backbone(tmp_path):
    """torchvision's resnet50 state dict, saved as its .pth files are, loads through train.init_checkpoint into the
    COCO 1x config's backbone: every backbone tensor matched, and the stem and a shortcut carry its values."""
    import torchvision

    from cascade_det.engine import load_config

    from detectron2.config import instantiate

    from .conftest import ROOT

    torch.manual_seed(0)
    resnet = torchvision.models.resnet50()
    path = str(tmp_path / "resnet50-0676ba61.pth")
    torch.save(resnet.state_dict(), path)
    cfg = load_config(os.path.join(ROOT, "configs/COCO/cascade_rcnn_R_50_FPN_1x.py"))
    model = instantiate(cfg.model)
    checkpointer = SafeDetectionCheckpointer(model)
    checkpointer.load(path)
    report = checkpointer.last_load_report
    backbone_keys = [
        k for k in model.state_dict() if k.startswith("backbone.bottom_up.") and not k.endswith("num_batches_tracked")
    ]
    assert set(backbone_keys) <= set(report["matched"]) and not report["unexpected"]
    state = model.state_dict()
    assert torch.equal(state["backbone.bottom_up.stem.conv1.weight"], resnet.conv1.weight)
    assert torch.equal(
        state["backbone.bottom_up.res3.0.shortcut.norm.running_var"], resnet.layer2[0].downsample[1].running_var
    )
    assert torch.equal(state["backbone.bottom_up.res5.2.conv3.weight"], resnet.layer4[2].conv3.weight)
    # torchvision puts the stride in the 3x3 conv, as the config's backbone does: same feature maps.
    resnet.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = resnet.layer4(
            resnet.layer3(resnet.layer2(resnet.layer1(resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x)))))))
        )
        got = model.backbone.bottom_up(x)["res5"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def caffe2_resnet50_names(d2_name: str) -> str:
    """Detectron2 ResNet-50 name -> its name in MSRA's R-50.pkl (Detectron/Caffe2: conv1_w, res_conv1_bn_s,
    res2_0_branch2a_w, res2_0_branch2a_bn_s/_b, res2_0_branch1_w, ...), written out from that naming scheme."""
    stem = {
        "stem.conv1.weight": "conv1_w",
        "stem.conv1.norm.weight": "res_conv1_bn_s",
        "stem.conv1.norm.bias": "res_conv1_bn_b",
    }
    if d2_name in stem:
        return stem[d2_name]
    stage, block, layer, *rest = d2_name.split(".")
    branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}[layer]
    suffix = {("weight",): "_w", ("norm", "weight"): "_bn_s", ("norm", "bias"): "_bn_b"}[tuple(rest)]
    return f"{stage}_{block}_{branch}{suffix}"


def test_msra_r50_pkl_initialises_the_msra_style_backbone(tmp_path):
    """An R-50.pkl in MSRA's layout (Caffe2 blob names, numpy arrays, BN as scale and bias only) loads through our
    numpy-only unpickler and Detectron2's Caffe2-name conversion into the Detectron2-recipe backbone."""
    from detectron2.config import LazyConfig, instantiate

    from .conftest import ROOT

    model = instantiate(LazyConfig.load(os.path.join(ROOT, "configs/common/models/cascade_rcnn_fpn.py")).model)
    bottom_up = model.backbone.bottom_up
    rng = np.random.default_rng(0)
    names = [k for k in bottom_up.state_dict() if not k.endswith(("running_mean", "running_var"))]
    blobs = {
        caffe2_resnet50_names(k): rng.standard_normal(bottom_up.state_dict()[k].shape).astype(np.float32) for k in names
    }
    blobs.update(fc1000_w=np.zeros((1000, 2048), np.float32), fc1000_b=np.zeros(1000, np.float32))
    path = str(tmp_path / "R-50.pkl")
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f, protocol=2)
    checkpointer = SafeDetectionCheckpointer(model)
    checkpointer.load(path)
    state = bottom_up.state_dict()
    for name in names:
        assert np.array_equal(state[name].numpy(), blobs[caffe2_resnet50_names(name)]), name
    assert {f"backbone.bottom_up.{k}" for k in names} <= set(checkpointer.last_load_report["matched"])
    assert len(names) == 1 + 2 + 16 * 3 * 3 + 4 * 3  # stem, 16 blocks x 3 convs (+norm), 4 shortcuts
