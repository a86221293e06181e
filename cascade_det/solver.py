"""Optimizer parameter groups of the backbone recipes that Detectron2 0.6 cannot express: a learning rate per
parameter name (layer-wise decay, ConvNeXt's detection recipe) with weight decay off for every 1-D parameter and bias.
(Detectron2 main's `get_default_optimizer_params(lr_factor_func=...)` does the first part, but only on main.)"""

from typing import Any, Callable, Dict, List

import torch

from detectron2.solver.build import reduce_param_groups

__all__ = ["layer_decay_optimizer_params"]


def layer_decay_optimizer_params(
    model: torch.nn.Module, base_lr: float, weight_decay: float, lr_factor_func: Callable[[str], float]
) -> List[Dict[str, Any]]:
    """Parameter groups for `torch.optim.AdamW(params, ...)`: each trainable parameter at lr `base_lr *
    lr_factor_func(name)` (its full name in `model`), weight decay 0 for 1-D parameters (norms, layer scales,
    biases) and names ending in ".bias", else `weight_decay`: MMDetection's `LearningRateDecayOptimizerConstructor`
    as the ConvNeXt and Swin detection repositories use it. Groups of equal settings are merged."""
    groups = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim == 1 or name.endswith(".bias")
        groups.append(
            {
                "params": [param],
                "lr": base_lr * lr_factor_func(name),
                "weight_decay": 0.0 if no_decay else weight_decay,
            }
        )
    return reduce_param_groups(groups)
