"""`InsideAnchorsRPN` and `MaxIoUMatcher`: the RPN anchor assignment of MMDetection's recipe, checked against
MMDetection 3.3.0's own `MaxIoUAssigner` and anchor-inside rule."""

import mmdet_reference  # benchmarks/ (tests/conftest.py puts it on the path)
import pytest
import torch

import cascade_det  # noqa: F401
from cascade_det.modeling import InsideAnchorsRPN, MaxIoUMatcher

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.structures import Boxes, Instances, pairwise_iou


def random_boxes(n, size, generator, min_side=4.0):
    xy = torch.rand(n, 2, generator=generator) * size * 0.8
    wh = torch.rand(n, 2, generator=generator) * size * 0.5 + min_side
    return torch.cat([xy, xy + wh], dim=1)


def mmdet_assignment(gt_boxes, anchors, inside=None):
    """MMDetection's MaxIoUAssigner of the cascade recipe's RPN on these boxes: (matched box index or -1 for
    none, label 1 / 0 / -1), anchors outside `inside` removed before assigning as its AnchorHead does."""
    from mmengine.structures import InstanceData

    assigner = mmdet_reference.max_iou_assigner(
        pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True
    )
    keep = torch.ones(len(anchors), dtype=torch.bool) if inside is None else inside
    result = assigner.assign(
        InstanceData(priors=anchors[keep]), InstanceData(bboxes=gt_boxes, labels=torch.zeros(len(gt_boxes)).long())
    )
    labels = torch.full((len(anchors),), -1, dtype=torch.int8)
    matches = torch.full((len(anchors),), -1, dtype=torch.int64)
    gt_inds = result.gt_inds
    kept_labels = torch.where(gt_inds > 0, 1, torch.where(gt_inds == 0, 0, -1)).to(torch.int8)
    labels[keep] = kept_labels
    matches[keep] = torch.where(gt_inds > 0, gt_inds - 1, -1)
    return matches, labels


@pytest.mark.parametrize("seed", range(5))
def test_max_iou_matcher_assigns_what_mmdetections_max_iou_assigner_assigns(seed):
    g = torch.Generator().manual_seed(seed)
    gt, anchors = random_boxes(6, 100, g), random_boxes(400, 100, g, min_side=2.0)
    matcher = MaxIoUMatcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True, low_quality_min_iou=0.3)
    matches, labels = matcher(pairwise_iou(Boxes(gt), Boxes(anchors)))
    expected_matches, expected_labels = mmdet_assignment(gt, anchors)
    assert torch.equal(labels, expected_labels)
    positive = labels == 1
    assert positive.any() and torch.equal(matches[positive], expected_matches[positive])


def test_low_quality_matches_need_the_minimum_iou_and_go_to_the_later_box():
    iou = torch.tensor(
        [
            [0.25, 0.10, 0.00],  # box 0: best 0.25 < 0.3, no low-quality match
            [0.00, 0.50, 0.40],  # box 1: best is prediction 1
            [0.00, 0.50, 0.60],  # box 2: best is prediction 2; ties prediction 1 with box 1 there
        ]
    )
    matcher = MaxIoUMatcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True, low_quality_min_iou=0.3)
    matches, labels = matcher(iou)
    assert labels.tolist() == [0, 1, 1]
    assert matches[1] == 1 and matches[2] == 2
    d2_matches, d2_labels = Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)(iou)
    assert d2_labels.tolist() == [1, 1, 1]  # Detectron2 makes box 0's best (IoU 0.25) positive


def test_a_box_whose_best_anchor_crosses_the_border_still_gets_a_positive_inside_anchor():
    cfg = cascade_det.add_cascade_config(get_cfg())
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "InsideAnchorsRPN"
    cfg.MODEL.RPN.BOUNDARY_THRESH = 0
    cfg.MODEL.RPN.LOW_QUALITY_MIN_IOU = 0.3
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[32]]
    cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[1.0]]
    cfg.MODEL.ANCHOR_GENERATOR.OFFSET = 0.5  # anchor centres at 4, 12, 20, ... px
    cfg.MODEL.RPN.IN_FEATURES = ["p3"]
    shape = {"p3": ShapeSpec(channels=8, stride=8)}
    ours = build_proposal_generator(cfg, shape)
    assert isinstance(ours, InsideAnchorsRPN) and isinstance(ours.anchor_matcher, MaxIoUMatcher)
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "RPN"
    detectron2_rpn = build_proposal_generator(cfg, shape)
    # a 24 x 24 box near the top-left corner: its best anchor (IoU 0.56, centred at (12, 12)) crosses the border;
    # the best inside the image (IoU 0.38, centred at (20, 20)) is MMDetection's low-quality match
    instances = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[1.0, 1.0, 25.0, 25.0]])))
    anchors = ours.anchor_generator([torch.zeros(1, 8, 8, 8)])
    (labels,), _ = ours.label_and_sample_anchors(anchors, [instances])
    (d2_labels,), _ = detectron2_rpn.label_and_sample_anchors(anchors, [instances])
    assert int((d2_labels == 1).sum()) == 0 and int((labels == 1).sum()) == 1
    inside = anchors[0].inside_box((64, 64), 0)
    _, expected = mmdet_assignment(instances.gt_boxes.tensor, anchors[0].tensor, inside)
    assert torch.equal(labels == 1, expected == 1)


def test_keeping_every_anchor_is_refused_with_the_key_to_set():
    cfg = cascade_det.add_cascade_config(get_cfg())
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "InsideAnchorsRPN"
    cfg.MODEL.RPN.BOUNDARY_THRESH = -1
    with pytest.raises(ValueError, match="MODEL.RPN.BOUNDARY_THRESH"):
        build_proposal_generator(cfg, {"res4": ShapeSpec(channels=8, stride=16)})
