"""Faster R-CNN R18-FPN on the embedded shapes dataset: the quickstart without the cascade, to measure what the
cascade brings on the same data (same backbone, RPN, data, schedule and optimizer; one box head with Detectron2's
`StandardROIHeads` and Detectron2's class-specific box regression instead of three class-agnostic stages).

    python train_net.py --config-file configs/Shapes/faster_rcnn_R_18_FPN.py
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers, StandardROIHeads

from .cascade_rcnn_R_18_FPN import CHANNELS, dataloader, lr_multiplier, model, optimizer, test, train  # noqa: F401

_cascade = model.roi_heads
model.roi_heads = L(StandardROIHeads)(
    num_classes=_cascade.num_classes,
    batch_size_per_image=_cascade.batch_size_per_image,
    positive_fraction=_cascade.positive_fraction,
    proposal_matcher=L(Matcher)(thresholds=[0.5], labels=[0, 1], allow_low_quality_matches=False),
    box_in_features=_cascade.box_in_features,
    box_pooler=_cascade.box_pooler,
    box_head=L(FastRCNNConvFCHead)(
        input_shape=ShapeSpec(channels=CHANNELS, height=7, width=7), conv_dims=[], fc_dims=[256, 256]
    ),
    box_predictor=L(FastRCNNOutputLayers)(
        input_shape=ShapeSpec(channels=256),
        test_score_thresh=0.05,
        box2box_transform=L(Box2BoxTransform)(weights=(10, 10, 5, 5)),
        num_classes="${..num_classes}",
    ),
)
train.update(output_dir="./output/shapes_faster_rcnn_R_18_FPN", per_stage_eval=False)
