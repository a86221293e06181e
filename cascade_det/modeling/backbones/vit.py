"""ViTDet's backbone: Detectron2 main's plain `ViT` (window- and global-attention blocks with relative positions)
under its `SimpleFeaturePyramid` (strides 4-32 and a max-pooled 64 from the stride-16 map), as `projects/ViTDet`
builds it. Only Detectron2 main has them (0.6 predates ViTDet). We use Detectron2's own classes rather than a
third ViT so that Detectron2's ViTDet checkpoints (`model_final_*.pkl`) load name for name and MAE's ImageNet files
with one prefix; on Detectron2 0.6 the names below raise ImportError saying what to install.

LazyConfig: `L(SimpleFeaturePyramid)(net=L(build_vit)(...), ...)` (Detectron2's ViT with `frozen_blocks`; the
recipes in configs/COCO/cascade_mask_rcnn_vitdet_*);
yacs: `MODEL.BACKBONE.NAME: build_vitdet_backbone` with `MODEL.VIT.*` (defaults: ViTDet's ViT-B).
"""

from functools import partial
from typing import Callable, Iterable, Optional, Tuple

import torch.nn as nn

import detectron2
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from ...errors import ConfigValueError
from .fpn import backbone_arguments

# Also ViT and SimpleFeaturePyramid (module __getattr__: Detectron2 main's, an ImportError on 0.6).
__all__ = [
    "build_vit",
    "check_sides_fit_the_square",
    "build_vitdet_backbone",
    "layer_norm",
    "vit_layer_decay",
    "vitdet_available",
]

_FROM_DETECTRON2_MAIN = ("ViT", "SimpleFeaturePyramid", "get_vit_lr_decay_rate")


def vitdet_available() -> bool:
    """Whether this Detectron2 has ViTDet's backbone (Detectron2 main; not 0.6)."""
    try:
        _detectron2_main("ViT")
    except ImportError:
        return False
    return True


def _detectron2_main(name: str):
    """`name` from Detectron2 main's `detectron2.modeling.backbone.vit`, or ImportError naming the fix."""
    try:
        from detectron2.modeling.backbone import vit
    except ImportError:
        raise ImportError(
            f"{name}: ViTDet's backbone (ViT + SimpleFeaturePyramid) is in Detectron2 main, not in Detectron2 "
            f"{detectron2.__version__} ({detectron2.__file__}). Install Detectron2 main (from its repository) to use "
            "the ViTDet recipes (configs/COCO/cascade_mask_rcnn_vitdet_*.py) or MODEL.BACKBONE.NAME="
            "build_vitdet_backbone; the Swin and ConvNeXt backbones work on 0.6"
        ) from None
    return getattr(vit, name)


def __getattr__(name: str):  # ViT, SimpleFeaturePyramid: resolved on first use, so that 0.6 can import this module
    if name in _FROM_DETECTRON2_MAIN:
        return _detectron2_main(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def layer_norm(eps: float = 1e-6) -> Callable[[int], nn.LayerNorm]:
    """`nn.LayerNorm` with `eps` as a norm-layer factory (ViTDet's blocks use eps 1e-6): a LazyConfig node that
    saves to yaml, where `functools.partial` would not."""
    return partial(nn.LayerNorm, eps=eps)


def vit_layer_decay(decay_rate: float, num_layers: int) -> Callable[[str], float]:
    """ViTDet's layer-wise lr decay as `lr_factor_func` of Detectron2 main's `get_default_optimizer_params`: the
    patch embedding and position embedding x decay_rate^(num_layers + 1), block i x decay_rate^(num_layers - i),
    everything outside the backbone (and the simple feature pyramid) x1 (`get_vit_lr_decay_rate`)."""
    return partial(_detectron2_main("get_vit_lr_decay_rate"), lr_decay_rate=decay_rate, num_layers=num_layers)


def build_vit(frozen_blocks: int = -1, **vit_arguments) -> nn.Module:
    """Detectron2 main's `ViT(**vit_arguments)` with its first blocks frozen, as `frozen_stages` does for Swin and
    ConvNeXt: -1 nothing; 0 the patch and position embeddings; k also blocks 0..k-1. Frozen parameters get no
    gradients (optimizers built by `get_default_optimizer_params` leave them out), and the frozen blocks drop no
    paths: what eval mode would do to them (a ViT block's only training-time behaviour is its drop path). The
    parameter names are the ViT's own, so every ViT checkpoint loads as it is. ViTDet itself trains every block."""
    net = _detectron2_main("ViT")(**vit_arguments)
    depth = len(net.blocks)
    if isinstance(frozen_blocks, bool) or not isinstance(frozen_blocks, int) or not -1 <= frozen_blocks <= depth:
        raise ConfigValueError(
            f"build_vit(frozen_blocks={frozen_blocks!r}) (LazyConfig model.backbone.net.frozen_blocks, yacs "
            f"MODEL.VIT.FROZEN_BLOCKS): expected -1 (nothing frozen), 0 (the patch and position embeddings) or 1-"
            f"{depth} (also that many of the ViT's {depth} blocks)"
        )
    if frozen_blocks < 0:
        return net
    net.patch_embed.requires_grad_(False)
    if net.pos_embed is not None:
        net.pos_embed.requires_grad_(False)
    for block in net.blocks[:frozen_blocks]:
        block.requires_grad_(False)
        block.drop_path = nn.Identity()
    return net


def check_sides_fit_the_square(square: int, square_key: str, sides: Iterable[Tuple[str, str, Optional[float]]]) -> None:
    """Refuse images that can be larger than the `square` (pixels) a backbone pads every image to: Detectron2's
    `ImageList` then pads by a negative amount, which crops the image without a word, and detections beyond the
    square are lost. `sides`: (what the images are, e.g. "test"; the config key of their resize; the longest side
    it allows, in pixels, or None where the resize does not bound it: left alone)."""
    for what, key, side in sides:
        if side is not None and side > square:
            raise ConfigValueError(
                f"{key}: the {what} images can reach {side:g} px on their longer side, but the backbone pads every "
                f"image to a {square} px square ({square_key}={square}) and Detectron2 crops what is larger without "
                f"a warning: resize to at most {square} px (max_size / crop_size) or set {square_key} to at least "
                f"{side:g}"
            )


@BACKBONE_REGISTRY.register()
def build_vitdet_backbone(cfg, input_shape: ShapeSpec):
    """ViT (`MODEL.VIT.*`) + ViTDet's simple feature pyramid (p2..p6, `MODEL.FPN.OUT_CHANNELS`, LN), every input
    padded to a square of `MODEL.VIT.IMG_SIZE` (Detectron2 main only), which INPUT.MAX_SIZE_TRAIN / _TEST (and
    TEST.AUG.MAX_SIZE with TTA) must not exceed."""
    _detectron2_main("ViT")  # on Detectron2 0.6: the ImportError saying so, before any check of the config
    arguments = backbone_arguments(cfg, "VIT")
    image_size = arguments["img_size"]
    # Here rather than only in cascade_det's runs, so that Detectron2's own DefaultPredictor, DefaultTrainer and
    # tools, which build the model through this, refuse it too (Detectron2's ResizeShortestEdge caps the longer
    # side at INPUT.MAX_SIZE_*; the yacs defaults, 1333, exceed ViTDet's 1024).
    sides = [
        ("train", "INPUT.MAX_SIZE_TRAIN", cfg.INPUT.MAX_SIZE_TRAIN),
        ("test", "INPUT.MAX_SIZE_TEST", cfg.INPUT.MAX_SIZE_TEST),
    ]
    if cfg.TEST.AUG.ENABLED:
        sides.append(("TTA", "TEST.AUG.MAX_SIZE", cfg.TEST.AUG.MAX_SIZE))
    check_sides_fit_the_square(image_size, "MODEL.VIT.IMG_SIZE", sides)
    if image_size % arguments["patch_size"]:
        raise ConfigValueError(
            f"MODEL.VIT.IMG_SIZE={image_size} is not a multiple of MODEL.VIT.PATCH_SIZE={arguments['patch_size']}"
        )
    bad = [i for i in arguments["window_block_indexes"] if not 0 <= i < arguments["depth"]]
    if bad:
        raise ConfigValueError(
            f"MODEL.VIT.WINDOW_BLOCK_INDEXES: {bad} are not blocks of a ViT of MODEL.VIT.DEPTH={arguments['depth']}"
        )
    arguments["use_act_checkpoint"] = arguments.pop("use_checkpoint")
    net = build_vit(in_chans=input_shape.channels, norm_layer=layer_norm(), out_feature="last_feat", **arguments)
    return _detectron2_main("SimpleFeaturePyramid")(
        net=net,
        in_feature="last_feat",
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        scale_factors=(4.0, 2.0, 1.0, 0.5),
        top_block=LastLevelMaxPool(),
        norm="LN",
        square_pad=image_size,
    )
