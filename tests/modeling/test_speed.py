"""optimize_for_speed keeps a model's parameters, outputs and gradients."""

import copy

import torch

import cascade_det  # noqa: F401
from cascade_det.modeling.speed import FastConv2d, optimize_for_speed

from detectron2.config import get_cfg
from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling.backbone import build_resnet_backbone


def backbone_with_random_frozen_statistics():
    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res4"]
    cfg.MODEL.BACKBONE.FREEZE_AT = 0  # every conv trains: gradients must match for all of them
    torch.manual_seed(0)
    model = build_resnet_backbone(cfg, ShapeSpec(channels=3))
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.weight.uniform_(0.5, 1.5), m.bias.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1), m.running_var.uniform_(0.5, 2.0)
    return model


def test_folded_frozen_bn_and_channels_last_keep_outputs_gradients_and_state_dict():
    reference = backbone_with_random_frozen_statistics()
    fast = optimize_for_speed(copy.deepcopy(reference))
    assert any(type(m) is FastConv2d and m.fold_frozen_bn for m in fast.modules())
    assert "FastConv2d(" in repr(fast) and "fold_frozen_bn=True" in repr(fast)  # print(model) shows what runs
    assert not fast._forward_pre_hooks and not any(m._forward_pre_hooks for m in fast.modules())
    assert list(fast.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, 3, 64, 96)
    expected, got = reference(x)["res4"], fast(x)["res4"]
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    expected.square().mean().backward()
    got.square().mean().backward()
    for (name, a), b in zip(reference.named_parameters(), fast.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5, msg=name)
    assert optimize_for_speed(fast) is fast  # idempotent
    fast.eval(), reference.eval()
    with torch.no_grad():
        got = fast(x)["res4"]  # eval mode: channels-last convolutions
        assert got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got, reference(x)["res4"], rtol=1e-4, atol=1e-4)
