"""CascadeRCNNROIHeads: parity with Detectron2's built-in CascadeROIHeads, its options, and its config checks."""

import copy

import pytest
import torch

import cascade_det
from cascade_det.modeling import CascadeRCNNROIHeads

from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import build_roi_heads
from detectron2.structures import Boxes, Instances, PolygonMasks
from detectron2.utils.events import EventStorage

from ..conftest import TEST_DEVICE

STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32}
IMAGE_SIZE = (96, 128)


def small_cascade_cfg(name="CascadeRCNNROIHeads", mask_on=False):
    cfg = cascade_det.add_cascade_config(get_cfg())
    cfg.MODEL.MASK_ON = mask_on
    cfg.MODEL.ROI_MASK_HEAD.NUM_CONV = 1
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIM = 8
    cfg.MODEL.ROI_HEADS.NAME = name
    cfg.MODEL.ROI_HEADS.IN_FEATURES = list(STRIDES)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 2
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 32
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIAlignV2"
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0  # keep many detections so the comparison covers many boxes
    return cfg


def input_shapes(channels=8):
    return {k: ShapeSpec(channels=channels, stride=s) for k, s in STRIDES.items()}


def make_inputs(seed=0, num_images=2, channels=8, num_random=32):
    g = torch.Generator().manual_seed(seed)
    h, w = IMAGE_SIZE
    features = {k: torch.randn(num_images, channels, h // s, w // s, generator=g) for k, s in STRIDES.items()}
    proposals, targets = [], []
    for _i in range(num_images):
        xy = torch.rand(4, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 12 + torch.rand(4, 2, generator=g) * 30
        gt = torch.cat([xy, xy + wh], dim=1)
        target = Instances(IMAGE_SIZE)
        target.gt_boxes = Boxes(gt)
        target.gt_classes = torch.randint(0, 3, (4,), generator=g)
        target.gt_masks = PolygonMasks([[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in gt.tolist()])
        targets.append(target)
        # Jittered copies of the ground truth (so every stage sees positives) plus random boxes.
        jitter = gt.repeat(8, 1) + torch.randn(32, 4, generator=g) * 4
        rand_xy = torch.rand(num_random, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        rand = torch.cat([rand_xy, rand_xy + 8 + torch.rand(num_random, 2, generator=g) * 30], dim=1)
        boxes = torch.cat([jitter, rand])
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 2)
        proposal = Instances(IMAGE_SIZE)
        proposal.proposal_boxes = Boxes(boxes)
        proposal.objectness_logits = torch.randn(len(boxes), generator=g)
        proposals.append(proposal)
    features = {k: v.to(TEST_DEVICE) for k, v in features.items()}
    return features, [p.to(TEST_DEVICE) for p in proposals], [t.to(TEST_DEVICE) for t in targets]


def build_pair(mask_on):
    torch.manual_seed(0)
    builtin = build_roi_heads(small_cascade_cfg("CascadeROIHeads", mask_on), input_shapes())
    ours = build_roi_heads(small_cascade_cfg(mask_on=mask_on), input_shapes())
    ours.load_state_dict(builtin.state_dict(), strict=True)  # parameter names are the built-in's
    return builtin.to(TEST_DEVICE), ours.to(TEST_DEVICE)


@pytest.fixture(scope="module")
def heads_pair():
    """Detectron2's built-in CascadeROIHeads and ours, ours loaded with the built-in's weights (strictly)."""
    return build_pair(mask_on=False)


@pytest.mark.device
def test_cascade_mask_rcnn_equals_builtin_in_training_and_inference():
    builtin, ours = build_pair(mask_on=True)
    builtin_losses, our_losses = run_train(builtin), run_train(ours)
    assert "loss_mask" in our_losses and set(our_losses) == set(builtin_losses)
    for key, value in builtin_losses.items():
        torch.testing.assert_close(our_losses[key], value, rtol=0, atol=1e-5, msg=key)
    features, proposals, _ = make_inputs(seed=3)
    outputs = []
    for heads in (builtin, ours):
        heads.eval()
        with torch.no_grad():
            outputs.append(heads(None, features, copy.deepcopy(proposals))[0])
    for expected, got in zip(*outputs):
        torch.testing.assert_close(got.pred_masks, expected.pred_masks, rtol=0, atol=1e-5)


def run_train(heads, seed=1, **input_kwargs):
    features, proposals, targets = make_inputs(**input_kwargs)
    heads.train()
    torch.manual_seed(seed)  # the RoI sampler draws random numbers
    with EventStorage():
        _, losses = heads(None, features, proposals, targets)
    return losses


@pytest.mark.device
def test_training_losses_and_gradients_equal_builtin_cascade(heads_pair):
    builtin, ours = heads_pair
    builtin_losses, our_losses = run_train(builtin), run_train(ours)
    assert (
        set(our_losses)
        == set(builtin_losses)
        == {f"{name}_stage{t}" for name in ("loss_cls", "loss_box_reg") for t in range(3)}
    )
    for key, value in builtin_losses.items():
        torch.testing.assert_close(our_losses[key], value, rtol=0, atol=1e-5, msg=key)
    for heads, losses in ((builtin, builtin_losses), (ours, our_losses)):
        heads.zero_grad()
        sum(losses.values()).backward()
    for (name, p_builtin), (_, p_ours) in zip(builtin.named_parameters(), ours.named_parameters()):
        torch.testing.assert_close(p_ours.grad, p_builtin.grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.device
def test_inference_equals_builtin_cascade(heads_pair):
    builtin, ours = heads_pair
    features, proposals, _ = make_inputs(seed=3)
    outputs = []
    for heads in heads_pair:
        heads.eval()
        with torch.no_grad():
            outputs.append(heads(None, features, copy.deepcopy(proposals))[0])
    for expected, got in zip(*outputs):
        assert len(expected) > 50  # a real comparison: many detections per image
        torch.testing.assert_close(got.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=1e-5)
        torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-5)
        assert torch.equal(got.pred_classes, expected.pred_classes)


def test_number_of_stages_follows_the_iou_list():
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS = [0.5, 0.6, 0.7, 0.75]
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS = [
        [10, 10, 5, 5],
        [20, 20, 10, 10],
        [30, 30, 15, 15],
        [40, 40, 20, 20],
    ]
    heads = build_roi_heads(cfg, input_shapes())
    assert heads.num_cascade_stages == len(heads.box_head) == len(heads.box_predictor) == 4
    assert [m.thresholds[1] for m in heads.proposal_matchers] == [0.5, 0.6, 0.7, 0.75]
    assert tuple(heads.box_predictor[3].box2box_transform.weights) == (40, 40, 20, 20)
    losses = run_train(heads)
    assert "loss_cls_stage3" in losses and "loss_box_reg_stage3" in losses


@pytest.mark.parametrize(
    "ious, weights, message",
    [
        ([0.5, 0.6], [[10, 10, 5, 5]], "IOUS has 2 stages but MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS has 1"),
        ([0.5, 1.2, 0.7], [[10, 10, 5, 5]] * 3, r"IOUS\[1\] = 1.2 is outside \(0, 1\)"),
        ([0.0], [[10, 10, 5, 5]], r"IOUS\[0\] = 0.0 is outside"),
        ([], [], "at least one stage"),
        ([0.5], [[10, 10, 5]], r"BBOX_REG_WEIGHTS\[0\].*expected 4 positive weights"),
    ],
)
def test_inconsistent_cascade_config_is_rejected_when_the_model_is_built(ious, weights, message):
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS = ious
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS = weights
    with pytest.raises(ValueError, match=message):
        build_roi_heads(cfg, input_shapes())


def test_unknown_test_score_ensemble_and_wrong_stage_loss_weights_are_rejected():
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.TEST_SCORE_ENSEMBLE = "median"
    with pytest.raises(ValueError, match="TEST_SCORE_ENSEMBLE"):
        build_roi_heads(cfg, input_shapes())
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS = [1.0, 0.5]
    with pytest.raises(ValueError, match=r"MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS\) has 2 entries for 3 stages"):
        build_roi_heads(cfg, input_shapes())


def test_errors_name_the_argument_and_its_yacs_key():
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_SAMPLING = "resampled"
    with pytest.raises(
        ValueError, match=r"^stage_sampling \(yacs: MODEL.ROI_BOX_CASCADE_HEAD.STAGE_SAMPLING\)='resampled' is not one"
    ):
        build_roi_heads(cfg, input_shapes())
    args = CascadeRCNNROIHeads.from_config(small_cascade_cfg(), input_shapes())
    for argument, value, message in [
        ("stage_sampling", "resampled", r"^stage_sampling \(yacs: \S+\)='resampled' is not one of"),
        ("test_score_ensemble", "stage7", r"^test_score_ensemble \(yacs: \S+\)='stage7' is not one of"),
        ("mask_train_stage", 5, r"^mask_train_stage \(yacs: \S+\)=5 is not a stage of this 3-stage cascade"),
    ]:
        with pytest.raises(ValueError, match=message):
            CascadeRCNNROIHeads(**{**args, argument: value})


def test_stage_loss_weights_scale_each_stage_loss(heads_pair):
    _, ours = heads_pair
    weighted = copy.deepcopy(ours)
    weighted.stage_loss_weights = [1.0, 0.5, 0.25]
    base, scaled = run_train(ours), run_train(weighted)
    for t, w in enumerate([1.0, 0.5, 0.25]):
        for name in ("loss_cls", "loss_box_reg"):
            key = f"{name}_stage{t}"
            torch.testing.assert_close(scaled[key], base[key] * w, rtol=1e-5, atol=1e-6)


def test_test_score_ensembles_differ_as_documented(heads_pair):
    _, ours = heads_pair
    features, proposals, _ = make_inputs(seed=5)
    ours.eval()
    with torch.no_grad():
        feats = [features[f] for f in ours.box_in_features]
        predictions = [ours._run_stage(feats, proposals, 0)]
        # Same input boxes for every stage: the ensemble arithmetic alone is under test here.
        predictions += [ours._run_stage(feats, proposals, t) for t in (1, 2)]
    logits = [p[0] for p in predictions]
    probs = [torch.softmax(x, dim=1) for x in logits]

    def scores(name):
        heads = copy.deepcopy(ours)
        heads.test_score_ensemble = name
        return torch.cat(heads._ensemble_scores(predictions, proposals))

    torch.testing.assert_close(scores("mean_probs"), sum(probs) / 3)
    torch.testing.assert_close(scores("mean_logits"), torch.softmax(sum(logits) / 3, dim=1))
    torch.testing.assert_close(scores("last"), probs[2])
    torch.testing.assert_close(scores("stage1"), probs[1])
    assert not torch.allclose(scores("mean_probs"), scores("mean_logits"))


def test_image_without_ground_truth_trains_as_all_background(heads_pair):
    _, ours = heads_pair
    features, proposals, targets = make_inputs()
    targets[1] = targets[1][:0]
    ours.train()
    with EventStorage():
        _, losses = ours(None, features, proposals, targets)
    assert all(torch.isfinite(v) for v in losses.values())


def record_stage_inputs(heads, monkeypatch):
    """Wrap _run_stage to record, per stage, the RoIs it was given."""
    seen = {}
    original = heads._run_stage

    def spy(features, proposals, stage):
        seen[stage] = list(proposals)
        return original(features, proposals, stage)

    monkeypatch.setattr(heads, "_run_stage", spy)
    return seen


def test_resample_mode_draws_batch_size_rois_per_image_per_stage_and_drops_gt_before_refinement(monkeypatch):
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_SAMPLING = "resample"
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
    heads = build_roi_heads(cfg, input_shapes())
    seen = record_stage_inputs(heads, monkeypatch)
    losses = run_train(heads, num_random=700)
    assert all(torch.isfinite(v) for v in losses.values())
    for stage in range(3):
        for rois in seen[stage]:
            assert len(rois) == 512  # 732 proposals (+4 GT) per image: always enough to fill the batch
            num_fg = int((rois.gt_classes < 3).sum())
            assert 0 < num_fg <= 512 * 0.25
            assert rois.has("is_gt")
    # Stage t's candidates are stage t-1's sampled RoIs minus the GT boxes it was given, plus the GT again.
    relabel = build_roi_heads(small_cascade_cfg(), input_shapes())
    relabel.load_state_dict(heads.state_dict())
    relabel.batch_size_per_image = 16
    seen_relabel = record_stage_inputs(relabel, monkeypatch)
    run_train(relabel)
    stage0 = seen_relabel[0]
    for t in (1, 2):  # Detectron2's mode keeps every refined box (GT-derived ones included), unsampled
        assert [len(p) for p in seen_relabel[t]] == [int(p.proposal_boxes.nonempty().sum()) for p in stage0]


def test_resample_and_relabel_are_the_only_stage_samplings():
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_SAMPLING = "resampled"
    with pytest.raises(ValueError, match="STAGE_SAMPLING"):
        build_roi_heads(cfg, input_shapes())


def test_per_stage_mask_heads_train_on_each_stage_and_average_at_test(monkeypatch):
    cfg = small_cascade_cfg(mask_on=True)
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.MASK_PER_STAGE = True
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.STAGE_LOSS_WEIGHTS = [1.0, 0.5, 0.25]
    heads = build_roi_heads(cfg, input_shapes())
    assert len(heads.mask_head) == 3
    assert not torch.equal(heads.mask_head[0].predictor.weight, heads.mask_head[1].predictor.weight)
    seen = record_stage_inputs(heads, monkeypatch)
    mask_inputs = []
    forward_mask = heads._forward_mask
    monkeypatch.setattr(
        heads,
        "_forward_mask",
        lambda f, inst, stage=0: mask_inputs.append((stage, inst)) or forward_mask(f, inst, stage),
    )
    losses = run_train(heads)
    assert {f"loss_mask_stage{t}" for t in range(3)} <= set(losses) and "loss_mask" not in losses
    assert [stage for stage, _ in mask_inputs] == [0, 1, 2]
    for stage, instances in mask_inputs:
        assert instances is not None and all(a is b for a, b in zip(instances, seen[stage]))
    # Test: the mean of the three heads' probabilities for the final boxes.
    features, proposals, _ = make_inputs(seed=3)
    heads.eval()
    with torch.no_grad():
        detections = heads(None, features, copy.deepcopy(proposals))[0]
        x = heads.mask_pooler([features[f] for f in heads.mask_in_features], [d.pred_boxes for d in detections])
        probs = sum(h.layers(x).sigmoid() for h in heads.mask_head) / 3
        classes = torch.cat([d.pred_classes for d in detections])
        expected = probs[torch.arange(len(classes)), classes][:, None]
    torch.testing.assert_close(torch.cat([d.pred_masks for d in detections]), expected)


def test_single_mask_head_can_train_on_the_last_stage(monkeypatch):
    cfg = small_cascade_cfg(mask_on=True)
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.MASK_TRAIN_STAGE = 2
    heads = build_roi_heads(cfg, input_shapes())
    seen = record_stage_inputs(heads, monkeypatch)
    mask_inputs = []
    forward_mask = heads._forward_mask
    monkeypatch.setattr(
        heads, "_forward_mask", lambda f, inst, stage=0: mask_inputs.append(inst) or forward_mask(f, inst, stage)
    )
    assert "loss_mask" in run_train(heads)
    assert all(a is b for a, b in zip(mask_inputs[0], seen[2]))
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.MASK_TRAIN_STAGE = 3
    with pytest.raises(ValueError, match="MASK_TRAIN_STAGE"):
        build_roi_heads(cfg, input_shapes())


def test_stage_detections_come_in_the_outputs_when_asked(heads_pair):
    """With return_stage_detections, each image's Instances hold the model's own detections (stage -1), unchanged,
    followed by each stage's own (its boxes, its classifier alone, post-processed as usual)."""
    from cascade_det.modeling import split_stage_detections

    _, ours = heads_pair
    features, proposals, _ = make_inputs(seed=3)
    ours.eval()
    with torch.no_grad():
        plain = ours(None, features, copy.deepcopy(proposals))[0]
        ours.return_stage_detections = True
        try:
            combined = ours(None, features, copy.deepcopy(proposals))[0]
        finally:
            ours.return_stage_detections = False
    for expected, got in zip(plain, combined):
        own, stages = split_stage_detections(got)
        assert len(stages) == 3 and all(len(s) > 0 for s in stages)
        torch.testing.assert_close(own.pred_boxes.tensor, expected.pred_boxes.tensor, rtol=0, atol=0)
        torch.testing.assert_close(own.scores, expected.scores, rtol=0, atol=0)
    assert split_stage_detections(plain[0])[1] == []
    # Stage t's rows are what stage t infers alone: the output of the cascade cut after stage t, scored by it.
    for t in range(3):
        expected = truncated_cascade(ours, t)(None, features, copy.deepcopy(proposals))[0]
        for want, got in zip(expected, combined):
            stage_t = split_stage_detections(got)[1][t]
            torch.testing.assert_close(stage_t.pred_boxes.tensor, want.pred_boxes.tensor, rtol=0, atol=0)
            torch.testing.assert_close(stage_t.scores, want.scores, rtol=0, atol=0)
            assert torch.equal(stage_t.pred_classes, want.pred_classes)


def truncated_cascade(heads, last_stage):
    """A copy of `heads` with stages 0..last_stage only, scoring by stage `last_stage` alone (in eval mode)."""
    cut = copy.deepcopy(heads).eval()
    cut.box_head = torch.nn.ModuleList(list(cut.box_head)[: last_stage + 1])
    cut.box_predictor = torch.nn.ModuleList(list(cut.box_predictor)[: last_stage + 1])
    cut.proposal_matchers = cut.proposal_matchers[: last_stage + 1]
    cut.num_cascade_stages = last_stage + 1
    cut.test_score_ensemble = f"stage{last_stage}"
    cut.return_stage_detections = False
    return cut


def test_stage_detections_of_a_mask_model_leave_the_mask_head_and_pasting_to_its_own_rows(monkeypatch):
    from cascade_det.modeling import split_stage_detections

    from detectron2.modeling.postprocessing import detector_postprocess

    _, heads = build_pair(mask_on=True)
    heads.eval()
    features, proposals, _ = make_inputs(seed=3)
    rows_masked = []
    heads.mask_head.register_forward_hook(lambda module, args, out: rows_masked.append(len(args[0])))
    with torch.no_grad():
        plain = heads(None, features, copy.deepcopy(proposals))[0]
        heads.return_stage_detections = True
        combined = heads(None, features, copy.deepcopy(proposals))[0]
    assert rows_masked[0] == rows_masked[1] == sum(len(p) for p in plain)  # the mask head saw the own rows alone
    pasted = []
    from detectron2.structures import masks as masks_module

    paste = masks_module.ROIMasks.to_bitmasks
    monkeypatch.setattr(
        masks_module.ROIMasks,
        "to_bitmasks",
        lambda self, boxes, *a, **k: pasted.append(len(boxes)) or paste(self, boxes, *a, **k),
    )
    for expected, got in zip(plain, combined):
        assert len(got) > len(expected)
        want = detector_postprocess(expected, *IMAGE_SIZE)
        own, stages = split_stage_detections(detector_postprocess(got, *IMAGE_SIZE))
        assert torch.equal(own.pred_masks, want.pred_masks)
        assert all(not s.pred_masks.any() for s in stages)
    assert pasted == [len(p) for p in plain for _ in (0, 1)]  # per image: the plain run and the own rows, no more


def test_pooler_is_chosen_where_it_is_built():
    from cascade_det.modeling import FastROIPooler

    from detectron2.modeling.poolers import ROIPooler

    cfg = small_cascade_cfg(mask_on=True)
    heads = build_roi_heads(cfg, input_shapes())
    assert type(heads.box_pooler) is FastROIPooler and type(heads.mask_pooler) is FastROIPooler
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.FAST_ROI_ALIGN = False
    heads = build_roi_heads(cfg, input_shapes())
    assert type(heads.box_pooler) is ROIPooler and type(heads.mask_pooler) is ROIPooler
    cfg = small_cascade_cfg()
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = "ROIPool"  # not RoIAlign: Detectron2's pooler, whatever the option
    assert type(build_roi_heads(cfg, input_shapes()).box_pooler) is ROIPooler
