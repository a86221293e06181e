"""`lazy_cascade_stages`: the per-stage parts of `CascadeRCNNROIHeads` as LazyConfig nodes, one set per stage."""

from typing import Sequence

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import FastRCNNConvFCHead

from .box_predictor import CascadeOutputLayers
from .cascade_roi_heads import check_cascade_stages

__all__ = ["lazy_cascade_stages"]

_POOLED_SHAPE = ShapeSpec(channels=256, height=7, width=7)  # FPN features pooled to 7x7, as in Detectron2


def lazy_cascade_stages(
    ious: Sequence[float] = (0.5, 0.6, 0.7),
    bbox_reg_weights: Sequence[Sequence[float]] = ((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)),
    pooled_shape: ShapeSpec = _POOLED_SHAPE,
    fc_dims: Sequence[int] = (1024, 1024),
    conv_dims: Sequence[int] = (),
    conv_norm: str = "",
    predictor=None,
    **predictor_kwargs,
) -> dict:
    """The per-stage parts of `CascadeRCNNROIHeads` as LazyConfig nodes, one set per IoU threshold:
    `model.roi_heads.update(**lazy_cascade_stages(ious=[0.5, 0.6, 0.7, 0.75], bbox_reg_weights=[...]))`
    changes the number of stages in one place. Defaults are the paper's (and both frameworks') 3 stages with
    2-fc box heads; `conv_dims` / `conv_norm` put convolutions before the fcs (MMDetection's 4conv1fc heads:
    `conv_dims=[256] * 4, fc_dims=[1024], conv_norm="SyncBN"`).
    `predictor` is the box predictor class (default `CascadeOutputLayers`); `predictor_kwargs` go to each
    stage's predictor (e.g. `box_reg_loss_type="giou"`); the test score threshold defaults to 0.05, as in
    Detectron2's configs (`FastRCNNOutputLayers` itself defaults to 0)."""
    check_cascade_stages(ious, bbox_reg_weights, keys=("lazy_cascade_stages(ious)", "bbox_reg_weights"))
    predictor = predictor or CascadeOutputLayers
    predictor_kwargs = {"test_score_thresh": 0.05, **predictor_kwargs}
    return {
        "box_heads": [
            L(FastRCNNConvFCHead)(
                input_shape=pooled_shape, conv_dims=list(conv_dims), fc_dims=list(fc_dims), conv_norm=conv_norm
            )
            for _ in ious
        ],
        "box_predictors": [
            L(predictor)(
                input_shape=ShapeSpec(channels=fc_dims[-1]),
                box2box_transform=L(Box2BoxTransform)(weights=tuple(weights)),
                num_classes="${...num_classes}",
                **predictor_kwargs,
            )
            for weights in bbox_reg_weights
        ],
        "proposal_matchers": [
            L(Matcher)(thresholds=[float(iou)], labels=[0, 1], allow_low_quality_matches=False) for iou in ious
        ],
    }
