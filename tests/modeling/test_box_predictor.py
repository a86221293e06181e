"""CascadeOutputLayers and the predictor registry."""

import copy

import pytest
import torch

import cascade_det  # noqa: F401
from cascade_det.modeling import CASCADE_BOX_PREDICTOR_REGISTRY, CascadeOutputLayers

from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances

from .test_cascade_roi_heads import input_shapes, make_inputs, run_train, small_cascade_cfg


def make_predictor(**kwargs):
    return CascadeOutputLayers(
        ShapeSpec(channels=16), box2box_transform=Box2BoxTransform((10, 10, 5, 5)), num_classes=3, **kwargs
    )


def test_class_agnostic_and_class_specific_output_sizes():
    assert make_predictor().bbox_pred.out_features == 4
    assert make_predictor(cls_agnostic_bbox_reg=False).bbox_pred.out_features == 3 * 4
    assert make_predictor().cls_score.out_features == 3 + 1


def test_class_specific_refinement_follows_gt_class_in_training_and_best_class_at_test():
    predictor = make_predictor(cls_agnostic_bbox_reg=False)
    proposal = Instances((64, 64))
    proposal.proposal_boxes = Boxes(torch.tensor([[10.0, 10, 30, 30], [5.0, 5, 20, 20]]))
    logits = torch.tensor([[0.0, 5.0, 0.0, 9.0], [4.0, 0.0, 0.0, 0.0]])  # best fg: class 1, class 0
    deltas = torch.zeros(2, 12)
    deltas[:, 4] = 1.0  # class 1 shifts x by 1/10 of the width; other classes stay put
    test_boxes = predictor.refine_boxes((logits, deltas), [proposal])[0]
    assert test_boxes[0, 0] > 10.0 and torch.equal(test_boxes[1], proposal.proposal_boxes.tensor[1])
    proposal.gt_classes = torch.tensor([2, 3])  # region 0: gt class 2 (no shift); region 1: background
    train_boxes = predictor.refine_boxes((logits, deltas), [proposal])[0]
    assert torch.equal(train_boxes[0], proposal.proposal_boxes.tensor[0])


def test_class_specific_cascade_trains_and_predicts():
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False
    heads = build_roi_heads(cfg, input_shapes())
    assert heads.box_predictor[0].bbox_pred.out_features == 3 * 4
    losses = run_train(heads)
    assert all(torch.isfinite(v) for v in losses.values())
    # It predicts: class-specific boxes (4K deltas per region) decoded into detections inside the image.
    features, proposals, _ = make_inputs(seed=3)
    heads.eval()
    with torch.no_grad():
        detections = heads(None, features, copy.deepcopy(proposals))[0]
    assert all(len(d) > 0 for d in detections)
    assert {int(c) for d in detections for c in d.pred_classes} <= {0, 1, 2}
    for d in detections:
        boxes = d.pred_boxes.tensor
        assert (boxes[:, 2:] >= boxes[:, :2]).all() and (boxes[:, 2] <= d.image_size[1]).all()


def test_giou_box_loss_is_selectable_and_validated():
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "giou"
    losses = run_train(build_roi_heads(cfg, input_shapes()))
    assert losses["loss_box_reg_stage0"] > 0
    with pytest.raises(ValueError, match=r"box_reg_loss_type='ciou2' \(yacs: "):
        make_predictor(box_reg_loss_type="ciou2")
    cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE = "ciou2"  # a yacs user reads the key
    with pytest.raises(ValueError, match=r"box_reg_loss_type='ciou2' \(yacs: MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE"):
        build_roi_heads(cfg, input_shapes())


def test_config_names_a_registered_predictor():
    @CASCADE_BOX_PREDICTOR_REGISTRY.register()
    class WiderOutputLayers(CascadeOutputLayers):
        pass

    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.PREDICTOR_NAME = "WiderOutputLayers"
    heads = build_roi_heads(cfg, input_shapes())
    assert all(type(p).__name__ == "WiderOutputLayers" for p in heads.box_predictor)
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.PREDICTOR_NAME = "NoSuchPredictor"
    with pytest.raises(KeyError, match="NoSuchPredictor"):
        build_roi_heads(cfg, input_shapes())


def test_box_loss_can_differ_per_stage():
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_LOSS_TYPES = ["smooth_l1", "smooth_l1", "giou"]
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.SMOOTH_L1_BETAS = [0.0, 1.0, 0.0]
    heads = build_roi_heads(cfg, input_shapes())
    assert [p.box_reg_loss_type for p in heads.box_predictor] == ["smooth_l1", "smooth_l1", "giou"]
    assert [p.smooth_l1_beta for p in heads.box_predictor] == [0.0, 1.0, 0.0]
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_LOSS_TYPES = ["giou", "giou"]
    with pytest.raises(ValueError, match="BBOX_REG_LOSS_TYPES has 2 entries"):
        build_roi_heads(cfg, input_shapes())


def test_predictor_is_detectron2s_fast_rcnn_output_layers_with_its_box_losses():
    from detectron2.modeling.roi_heads import FastRCNNOutputLayers

    assert issubclass(CascadeOutputLayers, FastRCNNOutputLayers)
    for loss in ("diou", "ciou"):  # Detectron2's, inherited
        cfg = small_cascade_cfg()
        cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_LOSS_TYPES = ["smooth_l1", "giou", loss]
        losses = run_train(build_roi_heads(cfg, input_shapes()))
        assert torch.isfinite(losses["loss_box_reg_stage2"]) and losses["loss_box_reg_stage2"] > 0


def test_integer_and_dict_loss_weights_mean_the_same_as_floats():
    assert make_predictor(loss_weight=2).loss_weight == {"loss_cls": 2.0, "loss_box_reg": 2.0}
    assert make_predictor(loss_weight={"loss_box_reg": 3.0}).loss_weight == {"loss_cls": 1.0, "loss_box_reg": 3.0}


def test_detectron2_mains_sigmoid_ce_and_federated_loss_stay_usable():
    cfg = small_cascade_cfg()
    if "USE_SIGMOID_CE" not in cfg.MODEL.ROI_BOX_HEAD:
        pytest.skip("Detectron2 0.6 has no USE_SIGMOID_CE / USE_FED_LOSS (Detectron2 main has; CI tests it there)")
    from detectron2.data import MetadataCatalog

    # The federated loss samples negative classes by their image counts, which LVIS-style metadata give.
    MetadataCatalog.get("fed_loss_counts").set(class_image_count=[{"id": i, "image_count": 5 + i} for i in range(3)])
    cfg.DATASETS.TRAIN = ("fed_loss_counts",)
    cfg.MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE = True
    cfg.MODEL.ROI_BOX_HEAD.USE_FED_LOSS = True
    cfg.MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES = 2
    heads = build_roi_heads(cfg, input_shapes())
    assert all(p.use_sigmoid_ce and p.use_fed_loss for p in heads.box_predictor)
    losses = run_train(heads)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_cls_stage1"] > 0
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    torch.testing.assert_close(heads.box_predictor[0].probs_from_logits(logits), logits.sigmoid())
