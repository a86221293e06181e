"""The yacs side of the backbones: `MODEL.BACKBONE.NAME: build_swin_fpn_backbone` (or `build_convnext_fpn_backbone`)
builds the backbone from `MODEL.SWIN.*` (`MODEL.CONVNEXT.*`) with Detectron2's FPN on top (`MODEL.FPN.*`, whose
IN_FEATURES are then some of p0..p3), as Detectron2's `build_resnet_fpn_backbone` does for ResNets."""

from typing import Dict

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import FPN, LastLevelMaxPool

from ...config import OPTIONS, yacs_option
from ...errors import ConfigValueError
from .convnext import ConvNeXt
from .swin import SwinTransformer

__all__ = ["backbone_arguments", "build_convnext_fpn_backbone", "build_swin_fpn_backbone"]


def backbone_arguments(cfg, node: str) -> Dict:
    """The constructor arguments held under yacs `MODEL.<node>` (every key cascade_det defines there, lower case;
    a config without them gets the defaults)."""
    prefix = f"MODEL.{node}."
    keys = [o.yacs for o in OPTIONS if o.yacs and o.yacs.startswith(prefix)]
    return {key[len(prefix) :].lower(): yacs_option(cfg, key) for key in keys}


def _fpn(cfg, bottom_up) -> FPN:
    in_features = list(cfg.MODEL.FPN.IN_FEATURES)
    missing = [f for f in in_features if f not in bottom_up.output_shape()]
    if missing:
        raise ConfigValueError(
            f"MODEL.FPN.IN_FEATURES={in_features}: {missing} not among the backbone's outputs "
            f"{list(bottom_up.output_shape())} (this backbone's stages are p0..p3, strides 4..32)"
        )
    return FPN(
        bottom_up=bottom_up,
        in_features=in_features,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelMaxPool(),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_swin_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """Swin Transformer (`MODEL.SWIN.*`) + FPN (`MODEL.FPN.*`)."""
    return _fpn(cfg, SwinTransformer(in_chans=input_shape.channels, **backbone_arguments(cfg, "SWIN")))


@BACKBONE_REGISTRY.register()
def build_convnext_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ConvNeXt (`MODEL.CONVNEXT.*`) + FPN (`MODEL.FPN.*`)."""
    return _fpn(cfg, ConvNeXt(in_chans=input_shape.channels, **backbone_arguments(cfg, "CONVNEXT")))
