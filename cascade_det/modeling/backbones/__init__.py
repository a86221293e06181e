"""Backbones beyond Detectron2's ResNet: Swin Transformer and ConvNeXt (timm's modules, the detection versions'
padding and output norms), usable as `L(SwinTransformer)(...)` in LazyConfigs and, with an FPN, by name in yacs
(`MODEL.BACKBONE.NAME: build_swin_fpn_backbone` / `build_convnext_fpn_backbone`, registered on import); and ViTDet's
ViT with its simple feature pyramid (Detectron2 main's classes, `vit.py`; yacs `build_vitdet_backbone`)."""

from .convnext import ConvNeXt, convnext_layer_decay, convnext_lr_decay_rate
from .fpn import build_convnext_fpn_backbone, build_swin_fpn_backbone
from .swin import SwinTransformer
from .vit import build_vit, build_vitdet_backbone, layer_norm, vit_layer_decay, vitdet_available

__all__ = [
    "ConvNeXt",
    "SwinTransformer",
    "build_convnext_fpn_backbone",
    "build_swin_fpn_backbone",
    "build_vit",
    "build_vitdet_backbone",
    "convnext_layer_decay",
    "convnext_lr_decay_rate",
    "layer_norm",
    "vit_layer_decay",
    "vitdet_available",
]
