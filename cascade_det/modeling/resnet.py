"""ResNet stages of any depth from one set of arguments, so that the backbone depth is one override.

Detectron2's `ResNet.make_default_stages(depth, **kwargs)` passes every keyword to every block: the bottleneck
arguments of a R-50/101/152 config (`stride_in_1x1`, `num_groups`, `dilation`) make `depth=18` or `34` fail in
`BasicBlock` ("unexpected keyword argument 'stride_in_1x1'"). `resnet_stages` drops them for basic-block depths
(logged at debug level), and is otherwise `make_default_stages`.

    model.backbone.bottom_up.stages.depth=18     # on any config of configs/COCO or configs/Custom
"""

import logging

from detectron2.modeling.backbone import ResNet
from detectron2.modeling.backbone.resnet import BasicBlock

from ..errors import ConfigValueError

__all__ = ["resnet_stages"]

logger = logging.getLogger(__name__)
# What BasicBlock accepts besides the channels and the stride that make_default_stages sets.
_BASIC_BLOCK_ARGUMENTS = {"norm"}


def resnet_stages(depth: int, block_class=None, **kwargs):
    """`ResNet.make_default_stages(depth, block_class, **kwargs)`; for depth 18 and 34 with the default block,
    the keywords only bottleneck blocks take are dropped. Returns the list of stages (lists of blocks)."""
    if depth not in (18, 34, 50, 101, 152):
        raise ConfigValueError(f"model.backbone.bottom_up.stages.depth={depth}: expected one of 18, 34, 50, 101, 152")
    if depth < 50 and block_class in (None, BasicBlock):
        dropped = sorted(set(kwargs) - _BASIC_BLOCK_ARGUMENTS)
        if dropped:
            logger.debug("ResNet-%d has basic blocks: not passing %s (bottleneck arguments)", depth, dropped)
        kwargs = {k: v for k, v in kwargs.items() if k in _BASIC_BLOCK_ARGUMENTS}
    return ResNet.make_default_stages(depth, block_class, **kwargs)
