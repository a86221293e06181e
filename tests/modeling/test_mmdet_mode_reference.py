"""MMDetection mode (re-sampling every stage, stage loss weights [1, 0.5, 0.25], smooth-L1 beta 1) against a
reference computed by hand.

How the reference is computed: every stage's head is made to output the same fixed logits and deltas for every
RoI (its box head returns a constant feature 1; its predictor's weights are zero and its biases are the fixed
values), so each stage's losses depend only on which RoIs it samples and how they are labelled. The test then
follows MMDetection's algorithm in plain Python, without Detectron2 or cascade_det code: stage t takes the previous
stage's sampled RoIs minus the ground truth, decodes the fixed deltas with the stage's box-coder weights, adds the
ground truth, labels every RoI foreground if its IoU >= u_t (all RoIs are sampled: fewer than 512), and computes
cross-entropy (mean over RoIs) and smooth-L1 (beta 1, summed over foreground, divided by the RoI count),
each times the stage's loss weight.
"""

import math

import pytest
import torch
from torch import nn

import cascade_det  # noqa: F401
from cascade_det.modeling import CascadeOutputLayers, CascadeRCNNROIHeads

from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

IOUS = [0.5, 0.6, 0.7]
WEIGHTS = [(10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)]
STAGE_LOSS_WEIGHTS = [1.0, 0.5, 0.25]
LOGITS = [[0.2, 1.0, -0.5], [0.4, 0.3, 0.1], [-0.2, 0.9, 0.0]]  # per stage: K=2 classes + background
DELTAS = [[0.5, -0.5, 0.1, 0.2], [-1.0, 0.8, -0.3, 0.4], [0.6, 0.6, 0.5, -0.2]]
GT_BOX, GT_CLASS = [20.0, 20.0, 60.0, 60.0], 1
PROPOSALS = [[22.0, 22.0, 62.0, 62.0], [30.0, 30.0, 70.0, 70.0], [5.0, 5.0, 15.0, 15.0]]


# ---- the reference, in plain Python ----
def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def center_size(b):
    w, h = b[2] - b[0], b[3] - b[1]
    return b[0] + w / 2, b[1] + h / 2, w, h


def encode(src, dst, weights):
    sx, sy, sw, sh = center_size(src)
    dx, dy, dw, dh = center_size(dst)
    wx, wy, ww, wh = weights
    return [wx * (dx - sx) / sw, wy * (dy - sy) / sh, ww * math.log(dw / sw), wh * math.log(dh / sh)]


def decode(deltas, box, weights):
    x, y, w, h = center_size(box)
    dx, dy, dw, dh = (d / wt for d, wt in zip(deltas, weights))
    cx, cy, pw, ph = x + dx * w, y + dy * h, w * math.exp(dw), h * math.exp(dh)
    return [cx - pw / 2, cy - ph / 2, cx + pw / 2, cy + ph / 2]


def smooth_l1(x, beta=1.0):
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def cross_entropy(logits, label):
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def reference_losses():
    losses, candidates = {}, [list(p) for p in PROPOSALS]
    background = len(LOGITS[0]) - 1
    for t in range(3):
        if t > 0:  # the previous stage's RoIs minus the ground truth (added last), refined by its deltas
            candidates = [decode(DELTAS[t - 1], r, WEIGHTS[t - 1]) for r in candidates]
        rois = candidates + [GT_BOX]
        labels = [GT_CLASS if iou(r, GT_BOX) >= IOUS[t] else background for r in rois]
        n = len(rois)
        loss_cls = sum(cross_entropy(LOGITS[t], c) for c in labels) / n
        loss_box = (
            sum(
                smooth_l1(p - g)
                for r, c in zip(rois, labels)
                if c != background
                for p, g in zip(DELTAS[t], encode(r, GT_BOX, WEIGHTS[t]))
            )
            / n
        )
        losses[f"loss_cls_stage{t}"] = STAGE_LOSS_WEIGHTS[t] * loss_cls
        losses[f"loss_box_reg_stage{t}"] = STAGE_LOSS_WEIGHTS[t] * loss_box
    return losses


# ---- our heads, made to output the fixed values ----
class ConstantFeature(nn.Module):
    output_shape = ShapeSpec(channels=1)

    def forward(self, x):
        return x.new_ones(x.shape[0], 1)


def fixed_predictor(t):
    predictor = CascadeOutputLayers(
        ShapeSpec(channels=1), box2box_transform=Box2BoxTransform(WEIGHTS[t]), num_classes=2, smooth_l1_beta=1.0
    )
    with torch.no_grad():
        for layer, bias in ((predictor.cls_score, LOGITS[t]), (predictor.bbox_pred, DELTAS[t])):
            layer.weight.zero_()
            layer.bias.copy_(torch.tensor(bias))
    return predictor


def test_mmdetection_mode_losses_equal_the_hand_computed_reference():
    heads = CascadeRCNNROIHeads(
        box_in_features=["p2"],
        box_pooler=ROIPooler(output_size=7, scales=(1 / 4,), sampling_ratio=0, pooler_type="ROIAlignV2"),
        box_heads=[ConstantFeature() for _ in IOUS],
        box_predictors=[fixed_predictor(t) for t in range(3)],
        proposal_matchers=[Matcher([u], [0, 1], allow_low_quality_matches=False) for u in IOUS],
        stage_sampling="resample",
        stage_loss_weights=STAGE_LOSS_WEIGHTS,
        num_classes=2,
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_append_gt=True,
    ).train()
    proposals = Instances((100, 100))
    proposals.proposal_boxes = Boxes(torch.tensor(PROPOSALS))
    proposals.objectness_logits = torch.zeros(len(PROPOSALS))
    targets = Instances((100, 100))
    targets.gt_boxes = Boxes(torch.tensor([GT_BOX]))
    targets.gt_classes = torch.tensor([GT_CLASS])
    with EventStorage():
        _, losses = heads(None, {"p2": torch.zeros(1, 1, 25, 25)}, [proposals], [targets])
    expected = reference_losses()
    assert set(losses) == set(expected)
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-5, abs=1e-6), key
    # The example exercises both labels at every stage, and the foreground set changes along the cascade.
    assert all(expected[f"loss_box_reg_stage{t}"] > 0 for t in range(3))
