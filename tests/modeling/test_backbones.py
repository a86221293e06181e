"""The Swin Transformer and ConvNeXt backbones: any input size, frozen stages, activation checkpointing, the yacs
builders, the ConvNeXt layer-wise lr decay, and (with Detectron2 main) Detectron2's own SwinTransformer's weights
giving the same features through the converter; ViTDet's yacs builder (Detectron2 main)."""

import inspect
import math

import pytest
import torch

from cascade_det.config import OPTIONS, add_cascade_config
from cascade_det.convert import convert_known_layouts
from cascade_det.errors import ConfigValueError
from cascade_det.modeling import ConvNeXt, SwinTransformer
from cascade_det.modeling.backbones import convnext_lr_decay_rate, vitdet_available
from cascade_det.solver import layer_decay_optimizer_params

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

TINY = {
    "swin": (SwinTransformer, {"embed_dim": 16, "depths": [2, 2, 2, 2], "num_heads": [1, 2, 2, 4]}),
    "convnext": (ConvNeXt, {"depths": [1, 1, 2, 1], "dims": [8, 16, 32, 64]}),
}


def tiny(kind, **kwargs):
    cls, arguments = TINY[kind]
    return cls(**arguments, drop_path_rate=0.0, **kwargs)


@pytest.mark.parametrize("kind", sorted(TINY))
@pytest.mark.parametrize("size", [(75, 101), (64, 64), (33, 200)])
def test_any_input_size_gives_each_stage_at_its_stride(kind, size):
    backbone = tiny(kind).eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, *size))
    assert list(out) == ["p0", "p1", "p2", "p3"]
    for name, shape in backbone.output_shape().items():
        expected = [math.ceil(math.ceil(s / 4) / (shape.stride // 4)) for s in size]
        if kind == "convnext":  # padded to a multiple of 32 first
            expected = [math.ceil(s / 32) * 32 // shape.stride for s in size]
        assert list(out[name].shape) == [1, shape.channels, *expected], name
        assert torch.isfinite(out[name]).all()


@pytest.mark.parametrize("kind", sorted(TINY))
def test_stages_after_the_last_returned_one_are_not_kept(kind):
    """They would be parameters without gradients, which DistributedDataParallel refuses."""
    backbone = tiny(kind, out_features=["p0", "p1"], frozen_stages=4)
    assert len(backbone._stages()) == 2 and list(backbone.output_shape()) == ["p0", "p1"]
    out = backbone(torch.randn(1, 3, 64, 64))
    assert list(out) == ["p0", "p1"]
    assert not any(".2." in n or ".3." in n for n, _ in backbone._stages().named_parameters(prefix="s"))


@pytest.mark.parametrize("kind", sorted(TINY))
def test_frozen_stages_take_no_gradient_and_stay_in_eval_mode(kind):
    backbone = tiny(kind, frozen_stages=1)
    backbone.train()
    stem, stages = backbone._stem(), backbone._stages()
    assert not any(p.requires_grad for p in stem.parameters())
    assert not any(p.requires_grad for p in stages[0].parameters()) and not backbone.norm0.weight.requires_grad
    assert all(p.requires_grad for p in stages[1].parameters()) and backbone.norm1.weight.requires_grad
    assert not stem.training and not stages[0].training and stages[1].training
    everything = tiny(kind, frozen_stages=-1)
    assert all(p.requires_grad for p in everything.parameters())


@pytest.mark.parametrize("kind", sorted(TINY))
def test_activation_checkpointing_gives_the_same_gradients(kind):
    torch.manual_seed(0)
    plain = tiny(kind).train()
    checkpointed = tiny(kind, use_checkpoint=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 70, 90)
    grads = []
    for model in (plain, checkpointed):
        model.zero_grad()
        sum(v.square().mean() for v in model(x).values()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("kind", sorted(TINY))
def test_bad_arguments_name_the_argument(kind):
    with pytest.raises(ConfigValueError, match="out_features"):
        tiny(kind, out_features=["res5"])
    with pytest.raises(ConfigValueError, match="frozen_stages=7"):
        tiny(kind, frozen_stages=7)
    with pytest.raises(ConfigValueError, match=r"depths=\[1, 1\]\): expected 4 stages each"):
        TINY[kind][0](**{**TINY[kind][1], "depths": [1, 1]})


@pytest.mark.parametrize("node, cls", [("SWIN", SwinTransformer), ("CONVNEXT", ConvNeXt)])
def test_yacs_defaults_are_the_constructors_defaults(node, cls):
    parameters = inspect.signature(cls).parameters
    keys = [o for o in OPTIONS if o.yacs and o.yacs.startswith(f"MODEL.{node}.")]
    assert keys
    for option in keys:
        default = parameters[option.yacs.rsplit(".", 1)[1].lower()].default
        assert list(default) == option.default if isinstance(default, tuple) else default == option.default, option


@pytest.mark.parametrize(
    "name, node", [("build_swin_fpn_backbone", "SWIN"), ("build_convnext_fpn_backbone", "CONVNEXT")]
)
def test_yacs_builds_the_backbone_with_an_fpn_by_name(name, node):
    cfg = add_cascade_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = name
    cfg.MODEL.FPN.IN_FEATURES = ["p0", "p1", "p2", "p3"]
    if node == "SWIN":
        cfg.MODEL.SWIN.update(EMBED_DIM=16, DEPTHS=[1, 1, 1, 1], NUM_HEADS=[1, 1, 2, 2], FROZEN_STAGES=0)
    else:
        cfg.MODEL.CONVNEXT.update(DEPTHS=[1, 1, 1, 1], DIMS=[8, 16, 32, 64], FROZEN_STAGES=0)
    backbone = build_backbone(cfg, ShapeSpec(channels=3)).eval()
    assert backbone.bottom_up.frozen_stages == 0
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 96))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"] and out["p2"].shape[1] == cfg.MODEL.FPN.OUT_CHANNELS
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]  # a ResNet config's, left in place
    with pytest.raises(ConfigValueError, match=r"MODEL.FPN.IN_FEATURES=.*p0..p3"):
        build_backbone(cfg, ShapeSpec(channels=3))


def test_convnext_layer_decay_follows_the_convnext_detection_recipe():
    """ConvNeXt-T's recipe (decay 0.7, 6 layers): stem 0.7^7, stage 0 0.7^6, stage 1 0.7^5, stage 2 blocks 0-2
    0.7^4 and 3-5 0.7^3, stage 3 0.7, FPN and heads 1."""
    rate = lambda name: convnext_lr_decay_rate(name, 0.7, 6)  # noqa: E731
    expected = {
        "backbone.bottom_up.stem.0.weight": 7,
        "backbone.bottom_up.stages.0.blocks.2.conv_dw.weight": 6,
        "backbone.bottom_up.stages.1.downsample.1.weight": 5,
        "backbone.bottom_up.stages.2.downsample.0.weight": 4,
        "backbone.bottom_up.stages.2.blocks.2.mlp.fc1.weight": 4,
        "backbone.bottom_up.stages.2.blocks.3.mlp.fc1.weight": 3,
        "backbone.bottom_up.stages.3.blocks.0.gamma": 1,
        "backbone.bottom_up.norm3.weight": 0,
        "backbone.fpn_lateral2.weight": 0,
        "roi_heads.box_predictor.0.cls_score.weight": 0,
    }
    for name, power in expected.items():
        assert rate(name) == pytest.approx(0.7**power), name


def test_layer_decay_groups_take_no_weight_decay_on_1d_parameters_and_biases():
    model = tiny("convnext")
    model = torch.nn.ModuleDict({"backbone": torch.nn.ModuleDict({"bottom_up": model})})
    groups = layer_decay_optimizer_params(model, 1e-3, 0.05, lambda n: convnext_lr_decay_rate(n, 0.7, 6))
    by_param = {id(p): g for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        group = by_param[id(p)]
        assert group["weight_decay"] == (0.0 if p.ndim == 1 else 0.05), name
        assert group["lr"] == pytest.approx(1e-3 * convnext_lr_decay_rate(name, 0.7, 6)), name
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_timm_layout_files_load_as_they_are():
    """A timm `swin_*` / `convnext_*` state dict (our names) is recognised; its classifier is dropped."""
    from timm.models.convnext import ConvNeXt as TimmConvNeXt

    _, arguments = TINY["convnext"]
    weights = TimmConvNeXt(**arguments).state_dict()
    converted = convert_known_layouts({"model": weights})["model"]
    ours = tiny("convnext")
    names = {"backbone.bottom_up." + k for k in ours.state_dict() if not k.startswith("norm")}
    assert set(converted) == names


def test_detectron2_mains_swin_weights_give_the_same_features():
    """Detectron2 main's own SwinTransformer (the original layout, Swin-Transformer-Object-Detection's code): its
    random weights through the converter give our backbone the same p0..p3 at a size that is no multiple of the
    window. Only Detectron2 main has it: this runs in the main phase of .ci/run."""
    swin = pytest.importorskip("detectron2.modeling.backbone.swin", reason="Detectron2 0.6 has no SwinTransformer")
    torch.manual_seed(0)
    _, arguments = TINY["swin"]
    theirs = swin.SwinTransformer(
        embed_dim=arguments["embed_dim"], depths=arguments["depths"], num_heads=arguments["num_heads"], drop_path_rate=0
    ).eval()
    weights = {"backbone.bottom_up." + k: v for k, v in theirs.state_dict().items()}
    converted = convert_known_layouts({"model": weights})["model"]
    ours = tiny("swin").eval()
    ours.load_state_dict({k[len("backbone.bottom_up.") :]: v for k, v in converted.items()})
    x = torch.randn(1, 3, 100, 140)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    for name in ("p0", "p1", "p2", "p3"):
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-4, msg=name)


vitdet_only = pytest.mark.skipif(
    not vitdet_available(), reason="Detectron2 0.6 has no ViTDet: the main phase tests these"
)


@vitdet_only
def test_yacs_vitdet_defaults_build_the_vitdet_b_recipes_backbone():
    """`MODEL.BACKBONE.NAME: build_vitdet_backbone` with the MODEL.VIT defaults is the ViT-B recipe's backbone: the same
    parameters, window blocks, square padding and p2..p6 (narrowed alike on both sides to keep it small)."""
    from cascade_det.engine import load_config

    from detectron2.config import instantiate

    from ..conftest import ROOT

    cfg = add_cascade_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_vitdet_backbone"
    cfg.MODEL.VIT.update(EMBED_DIM=32, NUM_HEADS=2)
    # Detectron2's yacs resize caps the longer side at 1333: larger than the square, so refused, naming the keys.
    with pytest.raises(ConfigValueError, match=r"INPUT.MAX_SIZE_TRAIN: the train images can reach 1333 px .*1024"):
        build_backbone(cfg, ShapeSpec(channels=3))
    cfg.INPUT.update(MAX_SIZE_TRAIN=1024, MAX_SIZE_TEST=1024)  # as the recipe resizes
    ours = build_backbone(cfg, ShapeSpec(channels=3))
    recipe = load_config(f"{ROOT}/configs/COCO/cascade_mask_rcnn_vitdet_B_100ep.py").model.backbone
    recipe.net.update(embed_dim=32, num_heads=2)
    expected = instantiate(recipe)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in expected.state_dict().items()}
    assert [b.window_size for b in ours.net.blocks] == [b.window_size for b in expected.net.blocks]
    assert ours.padding_constraints == expected.padding_constraints and ours.net.blocks[0].norm1.eps == 1e-6
    with torch.no_grad():
        out = ours.eval()(torch.randn(1, 3, 1024, 1024))
    assert list(out) == ["p2", "p3", "p4", "p5", "p6"] and out["p6"].shape[-1] == 16
    cfg.MODEL.VIT.WINDOW_BLOCK_INDEXES = [0, 12]
    with pytest.raises(ConfigValueError, match=r"MODEL.VIT.WINDOW_BLOCK_INDEXES: \[12\] .* MODEL.VIT.DEPTH=12"):
        build_backbone(cfg, ShapeSpec(channels=3))


@pytest.mark.skipif(vitdet_available(), reason="this Detectron2 has ViTDet (the test above runs instead)")
def test_yacs_vitdet_backbone_on_detectron2_0_6_says_it_needs_detectron2_main():
    cfg = add_cascade_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_vitdet_backbone"
    with pytest.raises(ImportError, match="ViT: ViTDet's backbone .* is in Detectron2 main, not in Detectron2 0.6"):
        build_backbone(cfg, ShapeSpec(channels=3))


@vitdet_only
def test_vit_frozen_blocks_take_no_gradient_and_drop_no_paths():
    """`build_vit(frozen_blocks=k)`: the embeddings and the first k blocks get no gradients and, in training, give the
    same output every time (no drop path, as in eval mode), the later blocks train as before; the parameter names
    stay the ViT's; out of range is an error naming the keys; yacs MODEL.VIT.FROZEN_BLOCKS reaches it."""
    from cascade_det.modeling.backbones import build_vit
    from cascade_det.modeling.backbones.vit import ViT

    arguments = {"img_size": 64, "embed_dim": 32, "depth": 3, "num_heads": 2, "drop_path_rate": 0.6}
    arguments["window_block_indexes"] = [0]
    torch.manual_seed(0)
    net = build_vit(frozen_blocks=2, **arguments).train()
    assert list(net.state_dict()) == list(ViT(**arguments).state_dict())
    frozen = [net.pos_embed, *net.patch_embed.parameters(), *net.blocks[0].parameters(), *net.blocks[1].parameters()]
    assert not any(p.requires_grad for p in frozen) and all(p.requires_grad for p in net.blocks[2].parameters())
    tokens = torch.randn(16, 4, 4, 32)
    assert torch.equal(net.blocks[1](tokens), net.blocks[1](tokens))  # drop path 0.3 when trained
    assert not torch.equal(net.blocks[2](tokens), net.blocks[2](tokens))  # drop path 0.6: still dropping
    net(torch.randn(2, 3, 64, 64))["last_feat"].sum().backward()
    assert all(p.grad is None for p in frozen) and net.blocks[2].mlp.fc1.weight.grad is not None
    assert all(p.requires_grad for p in build_vit(frozen_blocks=-1, **arguments).parameters())
    with pytest.raises(ConfigValueError, match=r"frozen_blocks=4\).*MODEL.VIT.FROZEN_BLOCKS.*1-3"):
        build_vit(frozen_blocks=4, **arguments)

    cfg = add_cascade_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_vitdet_backbone"
    cfg.MODEL.VIT.update(IMG_SIZE=64, EMBED_DIM=32, DEPTH=3, NUM_HEADS=2, WINDOW_BLOCK_INDEXES=[0], FROZEN_BLOCKS=1)
    cfg.INPUT.update(MAX_SIZE_TRAIN=64, MAX_SIZE_TEST=64)
    yacs = build_backbone(cfg, ShapeSpec(channels=3)).net
    assert not any(p.requires_grad for p in yacs.blocks[0].parameters()) and yacs.blocks[1].norm1.weight.requires_grad
