"""Speed options for a built Detectron2 model that leave its outputs and its training unchanged (up to float
rounding), each measured in benchmarks/benchmark_cascade.py.

`optimize_for_speed(model)` replaces Detectron2 `Conv2d` modules by `FastConv2d` modules (same parameters, same
names in the state dict; `print(model)` shows what runs):
  fold_frozen_bn           a convolution followed by a `FrozenBatchNorm2d` computes conv(x, W * s) + b' in one
                           convolution instead of a convolution and a separate scale-and-shift pass over its output
                           (s, b' from the frozen statistics, recomputed each call, so W stays the trained parameter:
                           its gradient, the checkpoint names and the optimizer's view are the unfused model's).
                           Helps training and inference.
  channels_last_inference  in eval mode the backbone's first convolution makes its input channels-last, so every
                           convolution after it runs in that layout (oneDNN on CPU and cuDNN then skip layout
                           conversions). Training keeps NCHW: on CPU, channels-last convolution backward is slower.
Config: `train.speed` (LazyConfig) / `MODEL.SPEED` (yacs), applied when the run builds its model.
"""

import torch
from torch.nn import functional as F

from detectron2.layers import Conv2d, FrozenBatchNorm2d

__all__ = ["FastConv2d", "optimize_for_speed", "plain_convolutions"]


class FastConv2d(Conv2d):
    """Detectron2's `Conv2d` with the speed options above. Built from an existing `Conv2d` by `from_conv`, sharing
    its parameter and norm objects."""

    def __init__(self, *args, fold_frozen_bn: bool = False, channels_last_inference: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fold_frozen_bn = fold_frozen_bn and isinstance(self.norm, FrozenBatchNorm2d)
        self.channels_last_inference = channels_last_inference

    @classmethod
    def from_conv(cls, conv: Conv2d, **options) -> "FastConv2d":
        fast = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            norm=conv.norm,
            activation=conv.activation,
            **options,
        )
        fast.weight, fast.bias = conv.weight, conv.bias
        return fast

    def extra_repr(self) -> str:
        return super().extra_repr() + (
            f", fold_frozen_bn={self.fold_frozen_bn}, channels_last_inference={self.channels_last_inference}"
        )

    def forward(self, x):
        if self.channels_last_inference and not self.training and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self.fold_frozen_bn:
            return super().forward(x)
        norm = self.norm
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        shift = norm.bias - norm.running_mean * scale
        bias = shift if self.bias is None else self.bias * scale + shift
        x = F.conv2d(
            x, self.weight * scale.view(-1, 1, 1, 1), bias, self.stride, self.padding, self.dilation, self.groups
        )
        return self.activation(x) if self.activation is not None else x


def plain_convolutions(model: torch.nn.Module) -> torch.nn.Module:
    """Turn the speed options of every FastConv2d in `model` off, in place (its parameters stay; only how it
    computes changes): what export and FLOP counting need. Returns the model."""
    for module in model.modules():
        if isinstance(module, FastConv2d):
            module.fold_frozen_bn = False
            module.channels_last_inference = False
    return model


def optimize_for_speed(model: torch.nn.Module, fold_frozen_bn: bool = True, channels_last_inference: bool = True):
    """Replace the model's Detectron2 `Conv2d` modules by `FastConv2d` with the options above (in place; returns
    `model`). Idempotent: modules already replaced keep their options."""
    backbone = getattr(model, "backbone", model)
    network = getattr(backbone, "bottom_up", backbone)  # an FPN registers its own convs before its bottom-up net
    first_conv = next((m for m in network.modules() if isinstance(m, Conv2d)), None)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not Conv2d:
                continue
            fold = fold_frozen_bn and isinstance(child.norm, FrozenBatchNorm2d)
            last = channels_last_inference and child is first_conv
            if fold or last:
                setattr(parent, name, FastConv2d.from_conv(child, fold_frozen_bn=fold, channels_last_inference=last))
    return model
