"""Models: the cascade ROI heads and the box predictors they are built from (registered on import)."""
from .box_predictor import CASCADE_BOX_PREDICTOR_REGISTRY, CascadeOutputLayers, build_cascade_box_predictor
from .cascade_roi_heads import CascadeRCNNROIHeads, check_cascade_stages

__all__ = [
    "CASCADE_BOX_PREDICTOR_REGISTRY",
    "CascadeOutputLayers",
    "CascadeRCNNROIHeads",
    "build_cascade_box_predictor",
    "check_cascade_stages",
]
