"""ConvNeXt (Liu et al., arXiv 2201.03545) as a Detectron2 backbone, built from timm's modules.

timm's `ConvNeXt` supplies the stem, the downsampling layers and the blocks (7x7 depthwise convolution, LayerNorm,
MLP, layer scale, drop path) with their parameter layout; as in the detection version (facebookresearch/ConvNeXt
`object_detection`, MMPretrain's `ConvNeXt` in MMDetection) each returned stage goes through its own channels-first
LayerNorm (`norm0`..`norm3`, eps 1e-6). An image whose sides are not multiples of 32 is padded (bottom and right)
so that every stage halves exactly; Detectron2's FPN models pad their inputs to 32 already.

The parameters are timm's (`stem.0`, `stages.{i}.downsample.{0,1}`, `stages.{i}.blocks.{j}.conv_dw`, `.norm`,
`.mlp.fc1`, `.mlp.fc2`, `.gamma`); `cascade_det.convert` reads the official and MMPretrain layouts into them.
"""

import re
from functools import partial
from typing import Callable, Dict, Sequence

import torch
import torch.nn.functional as F

from .staged import STAGE_NAMES, STAGE_STRIDES, StagedBackbone

__all__ = ["ConvNeXt", "convnext_layer_decay", "convnext_lr_decay_rate"]


class ConvNeXt(StagedBackbone):
    """ConvNeXt backbone: outputs p0..p3 at strides 4, 8, 16, 32 with `dims` channels.

    Args:
        depths, dims: blocks and channels per stage (default ConvNeXt-T).
        drop_path_rate: stochastic depth, rising linearly over the blocks from 0 to this rate.
        layer_scale_init_value: initial layer scale (the detection recipes: 1.0; ImageNet training: 1e-6).
        in_chans: image channels.
        out_features: which of p0..p3 to return.
        frozen_stages: -1 nothing frozen; 0 the stem; k > 0 also the first k stages (each with the downsampling
            it begins with) and their output norms: no gradients, eval mode.
        use_checkpoint: recompute each block's activations in the backward pass instead of keeping them.
    """

    def __init__(
        self,
        *,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        drop_path_rate: float = 0.4,
        layer_scale_init_value: float = 1.0,
        in_chans: int = 3,
        out_features: Sequence[str] = STAGE_NAMES,
        frozen_stages: int = -1,
        use_checkpoint: bool = False,
    ):
        super().__init__(out_features, frozen_stages, use_checkpoint, "ConvNeXt", {"depths": depths, "dims": dims})
        from timm.layers import LayerNorm2d
        from timm.models.convnext import ConvNeXt as TimmConvNeXt

        body = TimmConvNeXt(
            in_chans=in_chans,
            num_classes=0,
            global_pool="",
            depths=tuple(depths),
            dims=tuple(dims),
            ls_init_value=layer_scale_init_value,
            drop_path_rate=drop_path_rate,
        )
        # Only the stem and the stages: timm's final norm and head would be unused parameters.
        self.stem = body.stem
        self.stages = body.stages
        self._set_outputs("stem", "stages", list(dims), partial(LayerNorm2d, eps=1e-6))

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: (N, in_chans, H, W) normalised images, any H and W. Returns {name: (N, C_i, ceil(H / 32) * 32 / s_i,
        ...)} for the out_features, s_i = 4, 8, 16, 32."""
        h, w = x.shape[-2:]
        divisor = STAGE_STRIDES[-1]
        if h % divisor or w % divisor:
            x = F.pad(x, (0, (-w) % divisor, 0, (-h) % divisor))
        return self._run_stages(self.stem(x))


def convnext_lr_decay_rate(name: str, decay_rate: float, num_layers: int, prefix: str = "backbone.bottom_up.") -> float:
    """The lr factor of parameter `name` under ConvNeXt's layer-wise decay (facebookresearch/ConvNeXt
    object_detection's `LearningRateDecayOptimizerConstructor`, "layer_wise"): `decay_rate ** (num_layers + 1 -
    layer)`, layer 0 the stem, 1 stage 0, 2 stage 1, 3 + block // 3 stage 2's blocks, `num_layers` stage 3;
    everything else (output norms, FPN, heads) layer num_layers + 1, factor 1. The recipes: ConvNeXt-T 0.7 over 6
    layers, -S 0.7 over 12, -B 0.8 over 12. Use with `cascade_det.solver.layer_decay_optimizer_params`."""
    layer = num_layers + 1
    rest = name[len(prefix) :] if name.startswith(prefix) else ""
    if rest.startswith("stem."):
        layer = 0
    elif m := re.match(r"stages\.(\d+)\.downsample\.", rest):
        layer = {0: 0, 1: 2, 2: 3}.get(int(m.group(1)), num_layers)
    elif m := re.match(r"stages\.(\d+)\.blocks\.(\d+)\.", rest):
        stage, block = int(m.group(1)), int(m.group(2))
        layer = {0: 1, 1: 2, 2: 3 + block // 3}.get(stage, num_layers)
    return decay_rate ** (num_layers + 1 - layer)


def convnext_layer_decay(
    decay_rate: float, num_layers: int, prefix: str = "backbone.bottom_up."
) -> Callable[[str], float]:
    """`convnext_lr_decay_rate` with its settings bound: the `lr_factor_func` of
    `cascade_det.solver.layer_decay_optimizer_params`, written `L(convnext_layer_decay)(decay_rate=0.7, num_layers=6)`
    in a LazyConfig (a LazyCall, not a functools.partial, so that the config still saves as YAML)."""
    return partial(convnext_lr_decay_rate, decay_rate=decay_rate, num_layers=num_layers, prefix=prefix)
