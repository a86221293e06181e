"""Models: the cascade ROI heads, the box predictors they are built from (registered on import), the RoI pooler,
MMDetection's RPN anchor assignment, ResNet stages of any depth (`resnet_stages`), Swin Transformer and ConvNeXt
backbones (`backbones`), the speed options, and `lazy_cascade_stages` for LazyConfig files."""

from .backbones import ConvNeXt, SwinTransformer
from .box_predictor import CASCADE_BOX_PREDICTOR_REGISTRY, CascadeOutputLayers, build_cascade_box_predictor
from .cascade_roi_heads import CascadeRCNNROIHeads, check_cascade_stages, split_stage_detections
from .lazy_stages import lazy_cascade_stages
from .norm import FrozenStatsBatchNorm2d
from .resnet import resnet_stages
from .roi_align import FastROIPooler
from .rpn import InsideAnchorsRPN, MaxIoUMatcher
from .tta import CascadeRCNNWithTTA, tta_config

__all__ = [
    "CASCADE_BOX_PREDICTOR_REGISTRY",
    "CascadeOutputLayers",
    "CascadeRCNNROIHeads",
    "CascadeRCNNWithTTA",
    "ConvNeXt",
    "FastROIPooler",
    "FrozenStatsBatchNorm2d",
    "InsideAnchorsRPN",
    "MaxIoUMatcher",
    "SwinTransformer",
    "build_cascade_box_predictor",
    "check_cascade_stages",
    "lazy_cascade_stages",
    "resnet_stages",
    "split_stage_detections",
    "tta_config",
]
