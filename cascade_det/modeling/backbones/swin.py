"""Swin Transformer (Liu et al., arXiv 2103.14030) as a Detectron2 backbone, built from timm's modules.

timm's `SwinTransformer` supplies the layers (patch embedding, window attention with its relative-position bias,
MLPs, patch merging) and their parameter layout; what differs in the detection version (Swin-Transformer-Object-
Detection, MMDetection's `SwinTransformer`) is written here:
  any size     a feature map that is not a multiple of the window is padded (bottom and right, zeros after
               `norm1`) before the cyclic shift, and the shift's attention mask is computed on the padded map, once
               per stage and input size. (timm shifts first and pads after, which gives other outputs wherever
               the map is not a multiple of 7.) The image itself is padded to a multiple of the patch size.
  windows      always the full window and shift, however small the feature map (timm's `always_partition`).
  outputs      each returned stage through its own LayerNorm (`norm0`..`norm3`), as (N, C, H, W).

The parameters are timm's (`patch_embed.proj`, `layers.{i}.downsample` at the start of stage i as timm places it,
`layers.{i}.blocks.{j}.attn.qkv`, `...mlp.fc1`, ...); `cascade_det.convert` reads the official, Swin-Transformer-
Object-Detection, MMDetection 3 and Detectron2-main layouts into them.
"""

from functools import partial
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .staged import STAGE_NAMES, StagedBackbone

__all__ = ["SwinTransformer"]


def _window_attention(block: nn.Module, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """`block.attn` over the (shifted) windows of x (N, H, W, C), in the detection version's order: pad to a
    multiple of the window, shift, attend within windows (`mask` keeps shifted windows' parts apart), shift back,
    crop. Returns (N, H, W, C)."""
    from timm.models.swin_transformer import window_partition, window_reverse

    n, h, w, c = x.shape
    wh, ww = block.window_size
    x = F.pad(x, (0, 0, 0, (-w) % ww, 0, (-h) % wh))
    hp, wp = x.shape[1:3]
    shift = tuple(block.shift_size)
    if any(shift):
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    windows = window_partition(x, (wh, ww)).view(-1, wh * ww, c)
    windows = block.attn(windows, mask=mask if any(shift) else None)
    x = window_reverse(windows.view(-1, wh, ww, c), (wh, ww), hp, wp)
    if any(shift):
        x = torch.roll(x, shifts=shift, dims=(1, 2))
    return x[:, :h, :w]


def _swin_block(block: nn.Module, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """One timm `SwinTransformerBlock` on x (N, H, W, C) with the detection version's padding order."""
    x = x + block.drop_path1(_window_attention(block, block.norm1(x), mask))
    return x + block.drop_path2(block.mlp(block.norm2(x)))


class SwinTransformer(StagedBackbone):
    """Swin Transformer backbone: outputs p0..p3 at strides 4, 8, 16, 32 with embed_dim x (1, 2, 4, 8) channels.

    Args:
        embed_dim, depths, num_heads, window_size, mlp_ratio, qkv_bias: the architecture (default Swin-T).
        drop_path_rate: stochastic depth, rising linearly over the blocks from 0 to this rate.
        patch_size, in_chans: the patch embedding.
        out_features: which of p0..p3 to return.
        frozen_stages: -1 nothing frozen; 0 the patch embedding; k > 0 also the first k stages (each with the patch
            merging it begins with) and their output norms: no gradients, eval mode.
        use_checkpoint: recompute each block's activations in the backward pass instead of keeping them
            (activation checkpointing: less memory in training, about a third more time).
    """

    def __init__(
        self,
        *,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.2,
        patch_size: int = 4,
        in_chans: int = 3,
        out_features: Sequence[str] = STAGE_NAMES,
        frozen_stages: int = -1,
        use_checkpoint: bool = False,
    ):
        per_stage = {"depths": depths, "num_heads": num_heads}
        super().__init__(out_features, frozen_stages, use_checkpoint, "SwinTransformer", per_stage)
        from timm.layers import PatchEmbed
        from timm.models.swin_transformer import SwinTransformer as TimmSwinTransformer

        body = TimmSwinTransformer(
            img_size=window_size * patch_size * 8,  # only timm's initial mask sizes depend on it: masks are dynamic
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            global_pool="",
            embed_dim=embed_dim,
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            window_size=window_size,
            always_partition=True,
            strict_img_size=False,
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate,
            embed_layer=partial(PatchEmbed, dynamic_img_pad=True),
        )
        # Only the patch embedding and the stages: timm's classifier norm and head would be unused parameters.
        self.patch_embed = body.patch_embed
        self.layers = body.layers
        self._set_outputs("patch_embed", "layers", [embed_dim * 2**i for i in range(4)], nn.LayerNorm)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: (N, in_chans, H, W) normalised images, any H and W. Returns {name: (N, C_i, ceil(H / s_i),
        ceil(W / s_i))} for the out_features, s_i = 4, 8, 16, 32."""
        return self._run_stages(self.patch_embed(x))  # (N, H/4, W/4, C), padded to a multiple of the patch size

    channels_last_blocks = True

    def _block_function(self, block: nn.Module):
        return partial(_swin_block, block)

    def _stage_args(self, stage: nn.Module, x: torch.Tensor) -> Tuple[Optional[torch.Tensor]]:
        """(mask,): the shifted blocks' attention mask for a feature map x (N, H, W, C) of this stage, on the map
        padded to the window: (windows, window area, window area), 0 within a region and -100 across (timm's
        values, those of the detection versions); None if no block of the stage shifts. Once per stage and size."""
        shifted = [b for b in stage.blocks if any(b.shift_size)]
        if not shifted:
            return (None,)
        block = shifted[0]
        wh, ww = block.window_size
        h, w = x.shape[1:3]
        return (block.get_attn_mask(x.new_zeros(1, h + (-h) % wh, w + (-w) % ww, 1)),)
