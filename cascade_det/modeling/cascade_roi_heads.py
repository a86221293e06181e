"""Cascade R-CNN ROI heads (Cai & Vasconcelos, arXiv 1906.09756).

Stage t (t = 0..T-1) pools features for its input boxes, runs its own box head and predictor, and its decoded
boxes become the input boxes of stage t+1. In training stage t's boxes are labelled against ground truth at
IoU threshold u_t; at test time the boxes of the last stage are scored by an ensemble of the stages.

Shape shorthand: N images; Ri boxes in image i; R boxes in the batch; K foreground classes; T stages.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.autograd.function import Function

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, StandardROIHeads, build_box_head, build_mask_head
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import BitMasks, Boxes, Instances, ROIMasks, pairwise_iou
from detectron2.utils.events import get_event_storage

from ..config import CASCADE_HEAD, cascade_head_default, yacs_option
from ..errors import ConfigValueError
from ..tracing import dynamic_len as len  # noqa: A004  (sizes stay dynamic when traced)
from .box_predictor import build_cascade_box_predictor
from .roi_align import FastROIPooler

__all__ = ["CascadeRCNNROIHeads", "TEST_SCORE_ENSEMBLES", "check_cascade_stages", "split_stage_detections"]

# "stageK" (K an integer) selects one stage and is accepted besides these.
TEST_SCORE_ENSEMBLES = ("mean_probs", "mean_logits", "last")
STAGE_SAMPLINGS = ("relabel", "resample")


class _ScaleGradient(Function):
    """Identity forward; multiplies the gradient by `scale` backward."""

    @staticmethod
    def forward(ctx, input, scale):
        ctx.scale = scale
        return input

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.scale, None


def check_cascade_stages(
    ious: Sequence[float],
    bbox_reg_weights: Sequence[Sequence[float]],
    keys: Tuple[str, str] = (f"{CASCADE_HEAD}.IOUS", f"{CASCADE_HEAD}.BBOX_REG_WEIGHTS"),
) -> None:
    """Reject an inconsistent cascade before anything is built; messages name `keys` (the config keys or arguments
    that hold `ious` and `bbox_reg_weights`)."""
    iou_key, weights_key = keys
    if len(ious) == 0:
        raise ConfigValueError(f"A cascade needs at least one stage: {iou_key} is empty")
    if len(ious) != len(bbox_reg_weights):
        raise ConfigValueError(
            f"{iou_key} has {len(ious)} stages but {weights_key} has {len(bbox_reg_weights)}: "
            "give one (wx, wy, ww, wh) tuple per stage"
        )
    for t, iou in enumerate(ious):
        if not 0.0 < float(iou) < 1.0:
            raise ConfigValueError(f"{iou_key}[{t}] = {iou} is outside (0, 1)")
    for t, weights in enumerate(bbox_reg_weights):
        if len(weights) != 4 or any(float(w) <= 0 for w in weights):
            raise ConfigValueError(f"{weights_key}[{t}] = {tuple(weights)}: expected 4 positive weights")


def split_stage_detections(instances: Instances, num_stages: int = 0) -> Tuple[Instances, List[Instances]]:
    """Split one image's detections of a model whose cascade heads return stage detections
    (`return_stage_detections=True`: rows with a `stage` field) into (the model's own detections, [stage 0's own,
    stage 1's own, ...]), each without the `stage` field. `num_stages` (default: the highest stage present + 1) makes
    a stage without detections an empty Instances rather than a missing one. Instances without that field are
    returned as they are, with no stages."""
    if not instances.has("stage"):
        return instances, []
    stage = instances.stage
    num_stages = max(num_stages, int(stage.max()) + 1 if len(stage) else 0)
    parts = [instances[stage < 0]] + [instances[stage == t] for t in range(num_stages)]
    for part in parts:  # indexing made copies: the caller's instances keep their field
        part.remove("stage")
    return parts[0], parts[1:]


_UNKNOWN = object()


def _selected_stage(test_score_ensemble: str, num_stages: int):
    """The single stage `test_score_ensemble` selects, None for an ensemble of all stages, _UNKNOWN for a name that
    is neither."""
    if test_score_ensemble in ("mean_probs", "mean_logits"):
        return None
    if test_score_ensemble == "last":
        return num_stages - 1
    name = str(test_score_ensemble)
    if name.startswith("stage") and name[5:].isdigit() and int(name[5:]) < num_stages:
        return int(name[5:])
    return _UNKNOWN


def _stage_iou(matcher: Matcher) -> float:
    """The foreground IoU threshold of a two-label matcher ([-inf, u, inf] thresholds)."""
    return float(matcher.thresholds[1])


class _OwnRowMasks(ROIMasks):
    """The masks of an image's detections whose first rows are the model's own (with masks) and whose further rows
    are stage detections (boxes, scores and classes only). Pasting (Detectron2's `detector_postprocess`) pastes the
    own rows' masks alone; the stage rows' full-image masks are empty."""

    def __init__(self, own_masks: torch.Tensor, own_row: torch.Tensor):
        """own_masks: (R0, M, M) mask probabilities of the own rows; own_row: (N,) for each row its index into
        own_masks, -1 for a stage row."""
        self.tensor, self.own_row = own_masks, own_row

    def __len__(self):
        return len(self.own_row)

    def __getitem__(self, item) -> "_OwnRowMasks":
        return _OwnRowMasks(self.tensor, self.own_row[item])

    def to(self, device) -> "_OwnRowMasks":
        return _OwnRowMasks(self.tensor.to(device), self.own_row.to(device))

    def to_bitmasks(self, boxes: torch.Tensor, height, width, threshold=0.5) -> BitMasks:
        own = self.own_row >= 0
        out = torch.zeros((len(self.own_row), int(height), int(width)), dtype=torch.bool, device=boxes.device)
        if own.any():
            pasted = ROIMasks(self.tensor[self.own_row[own]]).to_bitmasks(boxes[own], height, width, threshold)
            out[own] = pasted.tensor
        return BitMasks(out)


def _with_stage_rows(own: Instances, stages: List[Instances]) -> Instances:
    """One image's detections with each stage's own detections appended as rows, marked by a `stage` field (t for
    stage t, -1 for the model's own). The stage rows carry boxes, scores and classes. Where the own rows have masks:
    in-box mask probabilities (R, 1, M, M) are kept by `_OwnRowMasks`, so that only those are pasted; masks already
    pasted (R, H, W) (test-time augmentation) get empty ones for the stage rows."""
    fields = ("pred_boxes", "scores", "pred_classes")
    other = [k for k in own.get_fields() if k not in fields and k != "pred_masks"]
    if other:  # e.g. keypoints: no stage has its own
        raise ConfigValueError(
            f"return_stage_detections: the model's detections carry {other}, which stage rows cannot"
        )
    parts = [Instances(own.image_size, **{k: own.get(k) for k in fields})]
    parts += [Instances(s.image_size, **{k: s.get(k) for k in fields}) for s in stages]
    for t, part in enumerate(parts):
        part.stage = torch.full((len(part),), t - 1, dtype=torch.int64, device=part.scores.device)
    out = Instances.cat(parts)
    if own.has("pred_masks") and own.pred_masks.dim() == 4:
        own_row = torch.full((len(out),), -1, dtype=torch.int64, device=out.scores.device)
        own_row[: len(own)] = torch.arange(len(own), device=own_row.device)
        out.pred_masks = _OwnRowMasks(own.pred_masks[:, 0], own_row)
    elif own.has("pred_masks"):
        masks = own.pred_masks
        out.pred_masks = torch.cat([masks, masks.new_zeros((len(out) - len(own), *masks.shape[1:]))])
    return out


@ROI_HEADS_REGISTRY.register()
class CascadeRCNNROIHeads(StandardROIHeads):
    """
    T cascade stages, each with its own box head, box predictor and IoU threshold, sharing one region pooler.
    Mask and keypoint heads (if configured) run on the final boxes at test time; the mask head trains on the samples
    of stage `mask_train_stage` (default 0, as in Detectron2), or one mask head per stage on its own; keypoints
    train on stage 0's. Attribute and parameter names equal Detectron2's `CascadeROIHeads` (`box_head.{t}`,
    `box_predictor.{t}`), so its checkpoints load as they are.
    """

    @configurable
    def __init__(
        self,
        *,
        box_in_features: List[str],
        box_pooler: ROIPooler,
        box_heads: List[nn.Module],
        box_predictors: List[nn.Module],
        proposal_matchers: List[Matcher],
        stage_sampling: str = cascade_head_default("STAGE_SAMPLING"),
        stage_loss_weights: Optional[Sequence[float]] = None,
        test_score_ensemble: str = cascade_head_default("TEST_SCORE_ENSEMBLE"),
        mask_train_stage: int = cascade_head_default("MASK_TRAIN_STAGE"),
        return_stage_detections: bool = cascade_head_default("RETURN_STAGE_DETECTIONS"),
        **kwargs,
    ):
        """
        Args:
            box_in_features, box_pooler: as in `StandardROIHeads`. `FastROIPooler` (our configs' choice) pools
                with multi-threaded RoIAlign on the CPU; Detectron2's `ROIPooler` works as well.
            box_heads, box_predictors, proposal_matchers: one per stage, in stage order. Matcher t labels the
                input boxes of stage t foreground at IoU >= u_t (the first matches the RPN proposals).
            stage_sampling: how stages 1..T-1 get their training RoIs from the previous stage's boxes.
                "relabel" (Detectron2): every refined box, labelled at the stage's IoU, no sampling.
                "resample" (MMDetection, the paper's code): the ground truth boxes that stage t-1 received as
                proposals are dropped before refinement; stage t adds the ground truth again (if
                proposal_append_gt) and samples batch_size_per_image RoIs at positive_fraction, as stage 0 does.
            stage_loss_weights: None (Detectron2): stage losses are summed and the gradient flowing into the
                shared region features is scaled by 1/T (`shared_gradient_scale`). Else one weight per stage
                multiplying its losses, with no gradient scaling (MMDetection's [1, 0.5, 0.25]): [1, 1, 1]
                differs from None by that scale.
            test_score_ensemble: how the T stages' class scores combine at test time: "mean_probs" (mean of
                softmax probabilities; Detectron2), "mean_logits" (softmax of the mean logits; MMDetection),
                "last" (last stage only) or "stageK" (stage K alone, K from 0). Boxes are always the last
                stage's.
            mask_train_stage: with one mask head (kwargs' mask_head a module), the stage whose sampled RoIs
                train it: 0 (Detectron2) or T-1 (the authors' last stage). With a list of T mask heads
                (MMDetection), head t trains on stage t's RoIs (its loss times the stage's loss weight) and at
                test time the heads' mask probabilities for the final boxes are averaged.
            return_stage_detections: at inference, also return each stage's own detections (its boxes scored by
                its classifier alone, post-processed as usual) as extra rows of each image's Instances, with a field
                `stage`: t for stage t's rows, -1 for the model's own detections. They are added after the mask
                head ran on the model's own rows and carry boxes, scores and classes (their masks are empty).
                `split_stage_detections` separates them; per-stage evaluation reads them.
            kwargs: the rest of `StandardROIHeads`' arguments (num_classes, sampling, mask and keypoint heads).
        """
        if "proposal_matcher" in kwargs:
            raise ConfigValueError("CascadeRCNNROIHeads takes one matcher per stage: pass proposal_matchers=[...]")
        if "fast_roi_align" in kwargs:
            raise ConfigValueError(
                "fast_roi_align is not an argument: choose the pooler, box_pooler=L(FastROIPooler)(...)"
            )
        num_stages = len(box_heads)
        if num_stages == 0:
            raise ConfigValueError("CascadeRCNNROIHeads needs at least one stage: box_heads is empty")
        if not len(box_predictors) == len(proposal_matchers) == num_stages:
            raise ConfigValueError(
                f"One box head, box predictor and matcher per stage: got {num_stages} box_heads, "
                f"{len(box_predictors)} box_predictors, {len(proposal_matchers)} proposal_matchers"
            )
        for t, matcher in enumerate(proposal_matchers):
            if len(matcher.thresholds) != 3 or not 0.0 < _stage_iou(matcher) < 1.0:
                raise ConfigValueError(
                    f"proposal_matchers[{t}] must be Matcher([u], [0, 1]) with u in (0, 1); "
                    f"got thresholds {matcher.thresholds[1:-1]}"
                )
        self._check_stage_options(num_stages, stage_sampling, stage_loss_weights, test_score_ensemble, mask_train_stage)
        # A sequence of mask heads (a list, or LazyConfig's ListConfig) means one per stage.
        mask_head = kwargs.get("mask_head")
        mask_per_stage = mask_head is not None and (
            isinstance(mask_head, nn.ModuleList) or not isinstance(mask_head, nn.Module)
        )
        if mask_per_stage:
            if len(kwargs["mask_head"]) != num_stages:
                raise ConfigValueError(
                    f"Per-stage masks need one mask head per stage: got {len(kwargs['mask_head'])} for {num_stages}"
                )
            kwargs["mask_head"] = nn.ModuleList(kwargs["mask_head"])
        # The base class wants one matcher (for its own sampling, which we replace by _label_and_sample).
        super().__init__(
            box_in_features=box_in_features,
            box_pooler=box_pooler,
            box_head=nn.ModuleList(box_heads),
            box_predictor=nn.ModuleList(box_predictors),
            proposal_matcher=proposal_matchers[0],
            **kwargs,
        )
        self.num_cascade_stages = num_stages
        self.proposal_matchers = proposal_matchers
        self.stage_sampling = stage_sampling
        self.stage_loss_weights = None if stage_loss_weights is None else [float(w) for w in stage_loss_weights]
        self.test_score_ensemble = test_score_ensemble
        self.mask_per_stage = mask_per_stage
        self.mask_train_stage = mask_train_stage
        self.return_stage_detections = return_stage_detections

    @staticmethod
    def _check_stage_options(num_stages, stage_sampling, stage_loss_weights, test_score_ensemble, mask_train_stage):
        """The one check of the stage options, at construction; messages name the argument and its yacs key."""

        def name(argument: str) -> str:
            return f"{argument} (yacs: {CASCADE_HEAD}.{argument.upper()})"

        if stage_sampling not in STAGE_SAMPLINGS:
            raise ConfigValueError(f"{name('stage_sampling')}={stage_sampling!r} is not one of {STAGE_SAMPLINGS}")
        if stage_loss_weights is not None and len(stage_loss_weights) != num_stages:
            raise ConfigValueError(
                f"{name('stage_loss_weights')} has {len(stage_loss_weights)} entries for {num_stages} stages: give "
                "one per stage, or none"
            )
        if _selected_stage(test_score_ensemble, num_stages) is _UNKNOWN:
            raise ConfigValueError(
                f"{name('test_score_ensemble')}={test_score_ensemble!r} is not one of {TEST_SCORE_ENSEMBLES} or "
                f"'stage0'..'stage{num_stages - 1}'"
            )
        if not isinstance(mask_train_stage, int) or not 0 <= mask_train_stage < num_stages:
            raise ConfigValueError(
                f"{name('mask_train_stage')}={mask_train_stage} is not a stage of this {num_stages}-stage cascade"
            )

    @property
    def test_stage(self) -> Optional[int]:
        """The one stage whose scores `test_score_ensemble` selects (None: an ensemble of all stages)."""
        return _selected_stage(self.test_score_ensemble, self.num_cascade_stages)

    @property
    def shared_gradient_scale(self) -> float:
        """What the gradient into the shared region features is multiplied by in training: 1/T with
        `stage_loss_weights=None` (Detectron2: summing T stage losses would scale it by T), 1 with explicit weights
        (MMDetection). So `[1, 1, 1]` and None differ by this scale alone."""
        return 1.0 / self.num_cascade_stages if self.stage_loss_weights is None else 1.0

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret.pop("proposal_matcher")
        options = {
            "stage_sampling": "STAGE_SAMPLING",
            "stage_loss_weights": "STAGE_LOSS_WEIGHTS",
            "test_score_ensemble": "TEST_SCORE_ENSEMBLE",
            "mask_train_stage": "MASK_TRAIN_STAGE",
            "return_stage_detections": "RETURN_STAGE_DETECTIONS",
        }
        for argument, key in options.items():
            ret[argument] = yacs_option(cfg, f"{CASCADE_HEAD}.{key}")
        ret["stage_loss_weights"] = list(ret["stage_loss_weights"]) or None
        return ret

    @staticmethod
    def _build_pooler(cfg, head: str, input_shape: Dict[str, ShapeSpec]) -> Optional[ROIPooler]:
        """The region pooler `MODEL.<head>` (ROI_BOX_HEAD / ROI_MASK_HEAD) describes: `FastROIPooler` where
        `MODEL.ROI_BOX_CASCADE_HEAD.FAST_ROI_ALIGN` is on and the type is ROIAlign(V2), else Detectron2's."""
        head_cfg = cfg.MODEL[head]
        if not head_cfg.POOLER_TYPE:
            return None
        fast = yacs_option(cfg, f"{CASCADE_HEAD}.FAST_ROI_ALIGN") and head_cfg.POOLER_TYPE in ("ROIAlign", "ROIAlignV2")
        return (FastROIPooler if fast else ROIPooler)(
            output_size=head_cfg.POOLER_RESOLUTION,
            scales=tuple(1.0 / input_shape[f].stride for f in cfg.MODEL.ROI_HEADS.IN_FEATURES),
            sampling_ratio=head_cfg.POOLER_SAMPLING_RATIO,
            pooler_type=head_cfg.POOLER_TYPE,
        )

    @classmethod
    def _init_mask_head(cls, cfg, input_shape):
        ret = super()._init_mask_head(cfg, input_shape)
        if not ret:
            return ret
        ret["mask_pooler"] = cls._build_pooler(cfg, "ROI_MASK_HEAD", input_shape)
        if yacs_option(cfg, f"{CASCADE_HEAD}.MASK_PER_STAGE"):
            # One more head per further stage, each built (and initialised) as the base class built the first.
            in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
            resolution = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
            shape = (
                ShapeSpec(channels=input_shape[in_features[0]].channels, width=resolution, height=resolution)
                if cfg.MODEL.ROI_MASK_HEAD.POOLER_TYPE
                else {f: input_shape[f] for f in in_features}
            )
            extra = [build_mask_head(cfg, shape) for _ in cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS[1:]]
            ret["mask_head"] = [ret["mask_head"]] + extra
        return ret

    @classmethod
    def _init_box_head(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        cascade = cfg.MODEL.ROI_BOX_CASCADE_HEAD
        check_cascade_stages(cascade.IOUS, cascade.BBOX_REG_WEIGHTS)
        in_features = cfg.MODEL.ROI_HEADS.IN_FEATURES
        in_channels = {input_shape[f].channels for f in in_features}
        if len(in_channels) != 1:
            raise ConfigValueError(
                f"MODEL.ROI_HEADS.IN_FEATURES {in_features} have different channel counts {in_channels}"
            )
        resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        box_pooler = cls._build_pooler(cfg, "ROI_BOX_HEAD", input_shape)
        pooled_shape = ShapeSpec(channels=in_channels.pop(), width=resolution, height=resolution)
        box_heads, box_predictors, matchers = [], [], []
        for stage, iou in enumerate(cascade.IOUS):
            box_head = build_box_head(cfg, pooled_shape)
            box_heads.append(box_head)
            box_predictors.append(build_cascade_box_predictor(cfg, box_head.output_shape, stage))
            matchers.append(Matcher([iou], [0, 1], allow_low_quality_matches=False))
        return {
            "box_in_features": in_features,
            "box_pooler": box_pooler,
            "box_heads": box_heads,
            "box_predictors": box_predictors,
            "proposal_matchers": matchers,
        }

    def forward(self, images, features, proposals, targets=None):
        """Same contract as `StandardROIHeads.forward`."""
        del images
        if self.training:
            proposals = self._label_and_sample(proposals, targets, stage=0, sample=True)
            losses, stage_proposals = self._forward_box(features, proposals, targets)
            if self.mask_on and self.mask_per_stage:
                for stage, stage_rois in enumerate(stage_proposals):
                    loss = self._forward_mask(features, stage_rois, stage)["loss_mask"]
                    losses[f"loss_mask_stage{stage}"] = loss * self._stage_loss_weight(stage)
            else:
                losses.update(self._forward_mask(features, stage_proposals[self.mask_train_stage]))
            # Keypoints, if any, train on the stage-0 samples (Detectron2's choice).
            losses.update(self._forward_keypoint(features, proposals))
            return proposals, losses
        pred_instances, stage_detections = self._forward_box(features, proposals)
        pred_instances = self.forward_with_given_boxes(features, pred_instances)
        if stage_detections is not None:  # added after the masks: the mask head runs on the model's own rows only
            pred_instances = [_with_stage_rows(own, stages) for own, stages in zip(pred_instances, stage_detections)]
        return pred_instances, {}

    def _forward_box(self, features: Dict[str, torch.Tensor], proposals: List[Instances], targets=None):
        """
        Run the T stages. Training returns ({"loss_cls_stage{t}", "loss_box_reg_stage{t}"}, the RoIs of each
        stage); inference returns (per-image Instances with pred_boxes, scores, pred_classes; with
        `return_stage_detections`, per image the list of each stage's own detections, else None).
        """
        features = [features[f] for f in self.box_in_features]
        image_sizes = [p.image_size for p in proposals]
        stage_outputs: List[Tuple[Tuple[torch.Tensor, torch.Tensor], List[Instances]]] = []
        boxes = None
        for stage in range(self.num_cascade_stages):
            if stage > 0:
                if self.training and self.stage_sampling == "resample":
                    boxes = [b[~p.is_gt] for b, p in zip(boxes, proposals)]
                proposals = self._proposals_from_boxes(boxes, image_sizes)
                if self.training:
                    proposals = self._label_and_sample(
                        proposals, targets, stage, sample=self.stage_sampling == "resample"
                    )
            predictions = self._run_stage(features, proposals, stage)
            stage_outputs.append((predictions, proposals))
            if stage < self.num_cascade_stages - 1:
                boxes = self.box_predictor[stage].refine_boxes(predictions, proposals)

        if self.training:
            return self._stage_losses(stage_outputs), [stage_proposals for _, stage_proposals in stage_outputs]
        scores = self._ensemble_scores([predictions for predictions, _ in stage_outputs], proposals)
        last = self.box_predictor[-1]
        boxes = last.predict_boxes(stage_outputs[-1][0], proposals)  # (Ri, 4) or (Ri, 4K)
        instances, _ = fast_rcnn_inference(
            boxes, scores, image_sizes, last.test_score_thresh, last.test_nms_thresh, last.test_topk_per_image
        )
        if not self.return_stage_detections:
            return instances, None
        # Each stage's own detections: its boxes scored by its classifier alone, post-processed as usual.
        per_stage = [
            self.box_predictor[t].inference(predictions, stage_proposals)[0]
            for t, (predictions, stage_proposals) in enumerate(stage_outputs)
        ]
        return instances, [[stage[i] for stage in per_stage] for i in range(len(instances))]

    def _stage_losses(self, stage_outputs) -> Dict[str, torch.Tensor]:
        storage = get_event_storage()
        losses = {}
        for stage, (predictions, proposals) in enumerate(stage_outputs):
            with storage.name_scope(f"stage{stage}"):
                stage_losses = self.box_predictor[stage].losses(predictions, proposals)
            weight = self._stage_loss_weight(stage)
            losses.update({f"{name}_stage{stage}": value * weight for name, value in stage_losses.items()})
        return losses

    def _stage_loss_weight(self, stage: int) -> float:
        return 1.0 if self.stage_loss_weights is None else self.stage_loss_weights[stage]

    def _forward_mask(self, features: Dict[str, torch.Tensor], instances: List[Instances], stage: int = 0):
        """
        Training: the mask loss {"loss_mask"} of the head of `stage` (per-stage masks) or of the single head, on
        the foreground RoIs of `instances`. Inference: sets pred_masks (Ri, 1, M, M) on `instances` from their
        pred_boxes; with per-stage heads, the mean of the heads' mask probabilities (MMDetection's test).
        """
        if not self.mask_on:
            return {} if self.training else instances
        heads = list(self.mask_head) if self.mask_per_stage else [self.mask_head]
        if self.training:
            instances, _ = select_foreground_proposals(instances, self.num_classes)
        if self.mask_pooler is not None:
            boxes = [x.proposal_boxes if self.training else x.pred_boxes for x in instances]
            x = self.mask_pooler([features[f] for f in self.mask_in_features], boxes)
        else:
            x = {f: features[f] for f in self.mask_in_features}
        if self.training or len(heads) == 1:
            return heads[stage if self.training and self.mask_per_stage else 0](x, instances)
        probs = sum(head.layers(x).sigmoid() for head in heads) / len(heads)  # (R, K or 1, M, M)
        if probs.shape[1] > 1:  # class-specific masks: the predicted class's
            classes = torch.cat([i.pred_classes for i in instances])
            probs = probs[torch.arange(len(classes), device=probs.device), classes][:, None]
        for masks, instances_per_image in zip(probs.split([len(i) for i in instances]), instances):
            instances_per_image.pred_masks = masks
        return instances

    def _ensemble_scores(self, stage_predictions, proposals: List[Instances]) -> List[torch.Tensor]:
        """Per-image class probabilities (Ri, K+1) from the stages' logits, by `test_score_ensemble`; each stage's
        logits become probabilities as its predictor computes them (softmax, or sigmoid for sigmoid CE)."""
        logits = [p[0] for p in stage_predictions]
        predictors = self.box_predictor
        if self.test_stage is not None:
            probs = predictors[self.test_stage].probs_from_logits(logits[self.test_stage])
        elif self.test_score_ensemble == "mean_logits":
            probs = predictors[-1].probs_from_logits(sum(logits) / len(logits))
        else:  # mean_probs
            probs = sum(p.probs_from_logits(x) for p, x in zip(predictors, logits)) * (1.0 / len(logits))
        return list(probs.split([len(p) for p in proposals]))

    def _run_stage(self, features: List[torch.Tensor], proposals: List[Instances], stage: int):
        """Pool, run stage `stage`'s head and predictor: returns (logits (R, K+1), deltas (R, 4 or 4K))."""
        box_features = self.box_pooler(features, [p.proposal_boxes for p in proposals])
        if self.training and self.shared_gradient_scale != 1.0:
            # Averages the stages' gradients into the shared features while keeping each head's own gradient whole.
            box_features = _ScaleGradient.apply(box_features, self.shared_gradient_scale)
        box_features = self.box_head[stage](box_features)
        return self.box_predictor[stage](box_features)

    def _proposals_from_boxes(self, boxes: List[torch.Tensor], image_sizes) -> List[Instances]:
        """The previous stage's boxes (per image (Ri, 4)) as this stage's input proposals, clipped to the image.
        Boxes that became empty are dropped in training with "relabel" sampling (Detectron2's cascade); "resample"
        keeps them (as MMDetection's: they are sampled as background), and so does inference, so that the stages'
        scores stay aligned."""
        proposals = []
        for boxes_per_image, image_size in zip(boxes, image_sizes):
            boxes_per_image = Boxes(boxes_per_image.detach())  # like RPN proposals: no gradient through boxes
            boxes_per_image.clip(image_size)
            if self.training and self.stage_sampling == "relabel":
                boxes_per_image = boxes_per_image[boxes_per_image.nonempty()]
            instances = Instances(image_size)
            instances.proposal_boxes = boxes_per_image
            # Detectron2's add_ground_truth_to_proposals expects the RPN's field; refined boxes have no score.
            instances.objectness_logits = boxes_per_image.tensor.new_zeros(len(boxes_per_image))
            proposals.append(instances)
        return proposals

    @torch.no_grad()
    def _label_and_sample(
        self, proposals: List[Instances], targets: List[Instances], stage: int, sample: bool
    ) -> List[Instances]:
        """Match the input boxes of `stage` to ground truth at the stage's IoU threshold and label them.

        sample=True: ground truth is first added as proposals (if proposal_append_gt), then batch_size_per_image
        RoIs are drawn at positive_fraction (Detectron2's stage-0 sampling, the same random draws). Returns the
        sampled RoIs with gt_classes (Ri,) in [0, K] (K = background), the matched gt_* fields where the image
        has ground truth, and is_gt (Ri,) marking the added ground-truth boxes.
        sample=False: every box is kept and labelled (Detectron2's stages 1..T-1).
        """
        matcher = self.proposal_matchers[stage]
        num_original = [len(p) for p in proposals]
        if sample and self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(targets, proposals)
        labelled, num_fg, num_bg = [], [], []
        for proposals_per_image, targets_per_image, n in zip(proposals, targets, num_original):
            has_gt = len(targets_per_image) > 0
            iou = pairwise_iou(targets_per_image.gt_boxes, proposals_per_image.proposal_boxes)
            matched_idxs, matched_labels = matcher(iou)
            if has_gt:
                gt_classes = targets_per_image.gt_classes[matched_idxs]
                gt_classes[matched_labels == 0] = self.num_classes
                gt_classes[matched_labels == -1] = -1
            else:
                gt_classes = torch.full_like(matched_idxs, self.num_classes)
            if sample:
                fg_idxs, bg_idxs = subsample_labels(
                    gt_classes, self.batch_size_per_image, self.positive_fraction, self.num_classes
                )
                keep = torch.cat([fg_idxs, bg_idxs])
            else:
                keep = torch.arange(len(proposals_per_image), device=matched_idxs.device)
            proposals_per_image = proposals_per_image[keep]
            proposals_per_image.gt_classes = gt_classes[keep]
            proposals_per_image.is_gt = keep >= n
            if has_gt:
                for name, value in targets_per_image.get_fields().items():
                    if name.startswith("gt_") and not proposals_per_image.has(name):
                        proposals_per_image.set(name, value[matched_idxs[keep]])
            classes = proposals_per_image.gt_classes
            num_fg.append(((classes >= 0) & (classes < self.num_classes)).sum())
            num_bg.append(len(proposals_per_image))
            labelled.append(proposals_per_image)
        num_fg = torch.stack(num_fg).tolist()  # one device-to-host copy for the batch, not one per image
        num_bg = [n - fg for n, fg in zip(num_bg, num_fg)]
        storage = get_event_storage()
        storage.put_scalar(f"stage{stage}/roi_head/num_fg_samples", sum(num_fg) / len(num_fg))
        storage.put_scalar(f"stage{stage}/roi_head/num_bg_samples", sum(num_bg) / len(num_bg))
        return labelled
