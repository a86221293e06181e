"""Speed options for a built Detectron2 model that leave its outputs and its training unchanged (up to float
rounding), each measured in benchmarks/benchmark_cascade.py.

`optimize_for_speed(model)`:
  fold_frozen_bn           every `Conv2d` followed by a `FrozenBatchNorm2d` computes conv(x, W * s) + b' in one
                           convolution instead of a convolution and a separate scale-and-shift pass over its output
                           (s, b' from the frozen statistics, recomputed each call, so W stays the trained parameter:
                           its gradient, the checkpoint names and the optimizer's view are the unfused model's).
                           Helps training and inference.
  channels_last_inference  in eval mode the backbone's input is made channels-last, so every convolution after it runs
                           in that layout (oneDNN on CPU and cuDNN then skip layout conversions). Training keeps
                           NCHW: on CPU, channels-last convolution backward is slower (measured in the benchmark).
Config: `train.speed` (LazyConfig) / `MODEL.SPEED` (yacs), applied by CascadeTrainer.build_model.
"""
import torch
from torch.nn import functional as F

from detectron2.layers import Conv2d, FrozenBatchNorm2d

__all__ = ["FrozenBNFoldedConv2d", "optimize_for_speed"]


class FrozenBNFoldedConv2d(Conv2d):
    """Detectron2's `Conv2d` whose `FrozenBatchNorm2d` norm is applied to the weight and bias instead of the
    output. Same parameters and buffers, same outputs, same gradients."""

    def forward(self, x):
        norm = self.norm
        scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
        shift = norm.bias - norm.running_mean * scale
        bias = shift if self.bias is None else self.bias * scale + shift
        x = F.conv2d(x, self.weight * scale.view(-1, 1, 1, 1), bias, self.stride, self.padding, self.dilation,
                     self.groups)
        return self.activation(x) if self.activation is not None else x


def _channels_last_in_eval(module, inputs):
    if module.training:
        return None
    return tuple(x.contiguous(memory_format=torch.channels_last) if torch.is_tensor(x) and x.dim() == 4 else x
                 for x in inputs)


def optimize_for_speed(model: torch.nn.Module, fold_frozen_bn: bool = True, channels_last_inference: bool = True):
    """Apply the speed options in place (see the module docstring); returns `model`. Idempotent."""
    if fold_frozen_bn:
        for module in model.modules():
            if type(module) is Conv2d and isinstance(module.norm, FrozenBatchNorm2d):
                module.__class__ = FrozenBNFoldedConv2d
    target = getattr(model, "backbone", model)
    if channels_last_inference and not getattr(target, "_cascade_det_channels_last", False):
        target.register_forward_pre_hook(_channels_last_in_eval)
        target._cascade_det_channels_last = True
    return model
