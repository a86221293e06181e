"""Swin Transformer, ConvNeXt and plain ViT weights in other projects' layouts, renamed to our backbones' names.

Recognised layouts (keys without the detector's "backbone." prefix; `cascade_det.convert` strips and adds it):
  Swin, "original"  the official ImageNet files (`swin_tiny_patch4_window7_224.pth`), Swin-Transformer-Object-
                    Detection's detectors and Detectron2 main's `SwinTransformer`: `layers.{i}.blocks.{j}.attn.qkv`,
                    `layers.{i}.downsample` at the end of stage i (ours: at the start of stage i + 1).
  Swin, MMDetection 3  `stages.{i}.blocks.{j}.attn.w_msa.qkv`, `ffn.layers.0.0` / `ffn.layers.1`,
                    `patch_embed.projection`, and patch merging through `nn.Unfold`, whose input channels are
                    ordered (channel, row, column) where the original's are (column, row, channel): permuted here.
  ConvNeXt, official  facebookresearch/ConvNeXt's ImageNet files and detectors: `downsample_layers.{i}.{0,1}`,
                    `stages.{i}.{j}.dwconv` / `pwconv1` / `pwconv2` / `gamma`.
  ConvNeXt, MMPretrain  the same with `depthwise_conv` / `pointwise_conv1` / `pointwise_conv2`.
  timm              our own names (timm's `swin_*` / `convnext_*` models' files): kept as they are.
  ViT               MAE's ImageNet files (`mae_pretrain_vit_base.pth`) and timm's `vit_*`: `blocks.{i}.attn.qkv`,
                    `patch_embed.proj`, `pos_embed` (with the class token's position, which Detectron2's ViT
                    expects): Detectron2 main's ViT has the same names, under "backbone.net." in ViTDet. The class
                    and mask tokens, the final norms and MAE's decoder are dropped (ViTDet has none); the relative
                    position tables are not in these files and start at zero, as ViTDet's do.
Buffers recomputed from the window size (`relative_position_index`, `attn_mask`), the classifier (`head.*`) and its
final norm (`norm.*`) are dropped; the detection versions' output norms `norm0`..`norm3` keep their names.
"""

import re
from typing import Callable, Dict, Optional, Tuple

import torch

__all__ = ["LAYOUT_NAMES", "LAYOUT_PREFIXES", "backbone_layout", "convert_backbone"]

_DROPPED = re.compile(r"(^|\.)(relative_position_index|attn_mask)$|^(head|norm)\.")
_VIT_DROPPED = re.compile(r"^(cls_token|mask_token|fc_norm\.|decoder_)")


def _unfold_to_original(weight: torch.Tensor) -> torch.Tensor:
    """Patch merging's last dimension (4C) from nn.Unfold's order (c, row, column) to the original's (column, row,
    c) (index 2C * column + C * row + c)."""
    c = weight.shape[-1] // 4
    return weight.reshape(*weight.shape[:-1], c, 2, 2).permute(*range(weight.dim() - 1), -1, -2, -3).flatten(-3)


def _swin_original(key: str, value: torch.Tensor):
    key = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)
    return key, value


def _swin_mmdet(key: str, value: torch.Tensor):
    key = key.replace("patch_embed.projection.", "patch_embed.proj.")
    key = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key)
    if ".downsample." in key:
        value = _unfold_to_original(value)
    key = re.sub(r"^stages\.", "layers.", key)
    key = key.replace(".attn.w_msa.", ".attn.").replace(".ffn.layers.0.0.", ".mlp.fc1.")
    key = key.replace(".ffn.layers.1.", ".mlp.fc2.")
    return key, value


_CONVNEXT_BLOCK_PARTS = {
    "dwconv": "conv_dw",
    "depthwise_conv": "conv_dw",
    "pwconv1": "mlp.fc1",
    "pointwise_conv1": "mlp.fc1",
    "pwconv2": "mlp.fc2",
    "pointwise_conv2": "mlp.fc2",
    "norm": "norm",
    "gamma": "gamma",
}


def _convnext(key: str, value: torch.Tensor):
    if m := re.match(r"^downsample_layers\.(\d+)\.(\d+)\.(.+)$", key):
        stage, part, rest = m.groups()
        key = f"stem.{part}.{rest}" if stage == "0" else f"stages.{stage}.downsample.{part}.{rest}"
    elif m := re.match(r"^stages\.(\d+)\.(\d+)\.([a-z_0-9]+)(\.(weight|bias))?$", key):
        stage, block, part, rest, _ = m.groups()
        if part not in _CONVNEXT_BLOCK_PARTS:
            raise KeyError(f"{key}: not a ConvNeXt block parameter ({sorted(_CONVNEXT_BLOCK_PARTS)})")
        key = f"stages.{stage}.blocks.{block}.{_CONVNEXT_BLOCK_PARTS[part]}{rest or ''}"
    return key, value


def _vit(key: str, value: torch.Tensor):
    return (None, None) if _VIT_DROPPED.match(key) else (key, value)


# Each layout: what it is (for log lines), its renaming of one (key, tensor) (None: dropped) and where the backbone
# sits in our detectors (Swin / ConvNeXt under an FPN's bottom-up; ViT in ViTDet's simple feature pyramid).
_LAYOUTS: Dict[str, Tuple[str, Callable, str]] = {
    "swin-original": (
        "a Swin Transformer in the original layout (official, Swin-Transformer-Object-Detection, Detectron2)",
        _swin_original,
        "backbone.bottom_up.",
    ),
    "swin-mmdet": ("a Swin Transformer in MMDetection 3's layout", _swin_mmdet, "backbone.bottom_up."),
    "convnext": ("a ConvNeXt in the official or MMPretrain layout", _convnext, "backbone.bottom_up."),
    "timm": (
        "a Swin Transformer or ConvNeXt in timm's layout",
        lambda key, value: (key, value),
        "backbone.bottom_up.",
    ),
    "vit": ("a plain ViT (MAE's ImageNet files, timm's vit_*)", _vit, "backbone.net."),
}
LAYOUT_NAMES = {layout: name for layout, (name, _, _) in _LAYOUTS.items()}
LAYOUT_PREFIXES = {layout: prefix for layout, (_, _, prefix) in _LAYOUTS.items()}


def backbone_layout(weights: Dict[str, torch.Tensor]) -> Optional[str]:
    """Which layout of `_LAYOUTS` a backbone state dict (without "backbone.") is in, or None (e.g. a ResNet)."""
    keys = list(weights)
    if any(".attn.w_msa." in k for k in keys):
        return "swin-mmdet"
    if any(k.startswith("layers.") and ".attn.qkv." in k for k in keys):
        # The original places a patch merging at the end of stage 0; timm has none in its stage 0.
        return "swin-original" if any(k.startswith("layers.0.downsample.") for k in keys) else "timm"
    if any(k.startswith("blocks.") and ".attn.qkv." in k for k in keys) and "patch_embed.proj.weight" in keys:
        return "vit"
    if any(k.startswith("downsample_layers.") for k in keys):
        return "convnext"
    if any(k.startswith("stages.") and ".blocks." in k and ".conv_dw." in k for k in keys):
        return "timm"
    return None


def convert_backbone(weights: Dict[str, torch.Tensor], layout: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """`weights` (a Swin, ConvNeXt or ViT backbone state dict in one of the layouts above, no "backbone." prefix) with
    our backbones' names, dropping what they recompute or lack (buffers, classifier). Raises ValueError for a
    state dict in no known layout, KeyError naming a parameter the layout does not know."""
    layout = layout or backbone_layout(weights)
    if layout not in _LAYOUTS:
        raise ValueError(
            "not a Swin Transformer, ConvNeXt or ViT state dict in a known layout (official, Swin-Transformer-Object-"
            "Detection, MMDetection 3, MMPretrain, Detectron2 main, MAE, timm): found keys such as "
            f"{sorted(weights)[:3]}"
        )
    _, rename, _ = _LAYOUTS[layout]
    out = {}
    for key, value in weights.items():
        if _DROPPED.search(key) or key.endswith("num_batches_tracked"):
            continue
        name, value = rename(key, torch.as_tensor(value))
        if name is not None:
            out[name] = value
    return out
