"""Box predictors for the cascade stages, and the registry a config names them from.

Detectron2 has no registry for box predictors (its `CascadeROIHeads` always builds `FastRCNNOutputLayers`), so
yacs users could not swap them. Here `MODEL.ROI_BOX_CASCADE_HEAD.PREDICTOR_NAME` names a class registered in
`CASCADE_BOX_PREDICTOR_REGISTRY`; LazyConfig users name the class directly.

Shape shorthand:
    N: images in the batch; Ri: proposals in image i; R: proposals in the batch (sum of Ri);
    K: foreground classes; B: box dimension (4).
    gt_classes are in [0, K]; K is the background class (the last logit), as in Detectron2.
"""
from typing import Dict, List, Tuple, Union

import torch
from fvcore.nn import giou_loss, smooth_l1_loss
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cross_entropy
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import Instances
from detectron2.utils.events import get_event_storage
from detectron2.utils.registry import Registry

__all__ = ["CASCADE_BOX_PREDICTOR_REGISTRY", "CascadeOutputLayers", "build_cascade_box_predictor"]

CASCADE_BOX_PREDICTOR_REGISTRY = Registry("CASCADE_BOX_PREDICTOR")
CASCADE_BOX_PREDICTOR_REGISTRY.__doc__ = """
Registry for the box predictor of one cascade stage: maps the box head's features to class logits (R, K+1)
and box deltas (R, 4) or (R, 4K). Called as `obj(cfg, input_shape, stage=t)`.
"""

BOX_REG_LOSS_TYPES = ("smooth_l1", "giou")


def build_cascade_box_predictor(cfg, input_shape: ShapeSpec, stage: int) -> nn.Module:
    """Build the predictor named by `cfg.MODEL.ROI_BOX_CASCADE_HEAD.PREDICTOR_NAME` for cascade stage `stage`."""
    name = cfg.MODEL.ROI_BOX_CASCADE_HEAD.get("PREDICTOR_NAME", "CascadeOutputLayers")
    return CASCADE_BOX_PREDICTOR_REGISTRY.get(name)(cfg, input_shape, stage=stage)


@CASCADE_BOX_PREDICTOR_REGISTRY.register()
class CascadeOutputLayers(nn.Module):
    """
    Two linear layers per stage: class logits `cls_score` (K+1 outputs) and box deltas `bbox_pred`
    (4 outputs class-agnostic, 4K class-specific). Parameter names equal Detectron2's `FastRCNNOutputLayers`,
    so its checkpoints load as they are.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        box2box_transform: Box2BoxTransform,
        num_classes: int,
        cls_agnostic_bbox_reg: bool = True,
        box_reg_loss_type: str = "smooth_l1",
        smooth_l1_beta: float = 0.0,
        loss_weight: Union[float, Dict[str, float]] = 1.0,
        test_score_thresh: float = 0.05,
        test_nms_thresh: float = 0.5,
        test_topk_per_image: int = 100,
    ):
        """
        Args:
            input_shape: shape of the box head's output for one region.
            box2box_transform: encodes boxes as deltas with this stage's weights (e.g. (10, 10, 5, 5)).
            num_classes: K, the number of foreground classes.
            cls_agnostic_bbox_reg: one box per region (True, as in the paper) or one per class.
            box_reg_loss_type: "smooth_l1" (beta 0 is L1, Detectron2's default; beta 1 is MMDetection's) or
                "giou" (on decoded boxes).
            smooth_l1_beta: transition point of the smooth-L1 loss, in delta units.
            loss_weight: multiplies both losses (float) or each by name ("loss_cls", "loss_box_reg").
            test_score_thresh, test_nms_thresh, test_topk_per_image: post-processing of `inference`.
        """
        super().__init__()
        if isinstance(input_shape, int):
            input_shape = ShapeSpec(channels=input_shape)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes} (MODEL.ROI_HEADS.NUM_CLASSES)")
        if box_reg_loss_type not in BOX_REG_LOSS_TYPES:
            raise ValueError(
                f"box_reg_loss_type={box_reg_loss_type!r} is not one of {BOX_REG_LOSS_TYPES} "
                "(MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE)"
            )
        input_size = input_shape.channels * (input_shape.width or 1) * (input_shape.height or 1)
        self.num_classes = num_classes
        self.cls_agnostic_bbox_reg = cls_agnostic_bbox_reg
        self.cls_score = nn.Linear(input_size, num_classes + 1)
        box_dim = len(box2box_transform.weights)
        self.bbox_pred = nn.Linear(input_size, (1 if cls_agnostic_bbox_reg else num_classes) * box_dim)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.constant_(layer.bias, 0)

        self.box2box_transform = box2box_transform
        self.box_reg_loss_type = box_reg_loss_type
        self.smooth_l1_beta = smooth_l1_beta
        if isinstance(loss_weight, (int, float)):
            loss_weight = {"loss_cls": float(loss_weight), "loss_box_reg": float(loss_weight)}
        self.loss_weight = dict(loss_weight)
        self.test_score_thresh = test_score_thresh
        self.test_nms_thresh = test_nms_thresh
        self.test_topk_per_image = test_topk_per_image

    @classmethod
    def from_config(cls, cfg, input_shape, stage: int = 0):
        cascade = cfg.MODEL.ROI_BOX_CASCADE_HEAD
        box_head = cfg.MODEL.ROI_BOX_HEAD
        # Per-stage box losses where given (one entry per stage), else ROI_BOX_HEAD's for every stage.
        loss_types = list(cascade.get("BBOX_REG_LOSS_TYPES", [])) or [box_head.BBOX_REG_LOSS_TYPE] * (stage + 1)
        betas = list(cascade.get("SMOOTH_L1_BETAS", [])) or [box_head.SMOOTH_L1_BETA] * (stage + 1)
        for key, values in (("BBOX_REG_LOSS_TYPES", loss_types), ("SMOOTH_L1_BETAS", betas)):
            if len(values) <= stage:
                raise ValueError(
                    f"MODEL.ROI_BOX_CASCADE_HEAD.{key} has {len(values)} entries: give one per stage, or none"
                )
        return {
            "input_shape": input_shape,
            "box2box_transform": Box2BoxTransform(weights=cascade.BBOX_REG_WEIGHTS[stage]),
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "cls_agnostic_bbox_reg": cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG,
            "box_reg_loss_type": loss_types[stage],
            "smooth_l1_beta": betas[stage],
            "loss_weight": {"loss_box_reg": cfg.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT},
            "test_score_thresh": cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST,
            "test_nms_thresh": cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
        }

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            x: (R, C) or (R, C, H, W) region features.

        Returns:
            logits (R, K+1) and deltas (R, 4) class-agnostic or (R, 4K) class-specific.
        """
        if x.dim() > 2:
            x = torch.flatten(x, start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)

    def losses(self, predictions, proposals: List[Instances]) -> Dict[str, torch.Tensor]:
        """
        Args:
            predictions: the output of `forward` for the R regions of `proposals`.
            proposals: per image, Instances with `proposal_boxes`, `gt_classes` and (where the image has
                ground truth) `gt_boxes`.

        Returns:
            {"loss_cls": mean cross-entropy over the R regions,
             "loss_box_reg": box loss summed over foreground regions, divided by R}; each times its weight.
        """
        logits, deltas = predictions
        gt_classes = torch.cat([p.gt_classes for p in proposals]) if proposals else logits.new_zeros(0).long()
        self._log_accuracy(logits, gt_classes)
        if proposals:
            proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
            # An image without ground truth has no gt_boxes; its regions are all background, so any
            # placeholder works: the box loss only reads foreground rows.
            gt_boxes = torch.cat([(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals])
        else:
            proposal_boxes = gt_boxes = deltas.new_zeros((0, 4))
        losses = {
            "loss_cls": cross_entropy(logits, gt_classes, reduction="mean"),
            "loss_box_reg": self.box_reg_loss(proposal_boxes, gt_boxes, deltas, gt_classes),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in losses.items()}

    def box_reg_loss(self, proposal_boxes, gt_boxes, deltas, gt_classes) -> torch.Tensor:
        """Box loss over foreground regions, normalised by all R regions (every foreground region then weighs
        the same whatever the batch's foreground count; Detectron2's convention). Boxes are (R, 4) XYXY."""
        fg = (gt_classes >= 0) & (gt_classes < self.num_classes)
        fg_inds = fg.nonzero().squeeze(1)
        box_dim = proposal_boxes.shape[1]
        if deltas.shape[1] == box_dim:
            fg_deltas = deltas[fg_inds]
        else:
            fg_deltas = deltas.view(-1, self.num_classes, box_dim)[fg_inds, gt_classes[fg_inds]]
        if self.box_reg_loss_type == "smooth_l1":
            target = self.box2box_transform.get_deltas(proposal_boxes[fg_inds], gt_boxes[fg_inds])
            loss = smooth_l1_loss(fg_deltas, target, self.smooth_l1_beta, reduction="sum")
        else:  # giou, checked in __init__
            pred_boxes = self.box2box_transform.apply_deltas(fg_deltas, proposal_boxes[fg_inds])
            loss = giou_loss(pred_boxes, gt_boxes[fg_inds], reduction="sum")
        return loss / max(gt_classes.numel(), 1.0)

    def predict_boxes(self, predictions, proposals: List[Instances]) -> List[torch.Tensor]:
        """Decoded boxes per image: (Ri, 4) class-agnostic or (Ri, 4K) class-specific, XYXY in pixels."""
        if not proposals:
            return []
        _, deltas = predictions
        proposal_boxes = torch.cat([p.proposal_boxes.tensor for p in proposals])
        boxes = self.box2box_transform.apply_deltas(deltas, proposal_boxes)
        return list(boxes.split([len(p) for p in proposals]))

    def refine_boxes(self, predictions, proposals: List[Instances]) -> List[torch.Tensor]:
        """One refined box per region, per image (Ri, 4): the next stage's input boxes.

        Class-specific regression picks each region's class: its ground-truth class for a foreground region
        in training, else the highest-scoring foreground class (as MMDetection's `refine_bboxes`)."""
        boxes = self.predict_boxes(predictions, proposals)
        if self.cls_agnostic_bbox_reg or not proposals:
            return boxes
        logits, _ = predictions
        classes = logits[:, :-1].argmax(dim=1)
        if proposals[0].has("gt_classes"):
            gt_classes = torch.cat([p.gt_classes for p in proposals])
            fg = gt_classes < self.num_classes
            classes = torch.where(fg, gt_classes, classes)
        box_dim = len(self.box2box_transform.weights)
        flat = torch.cat(boxes).view(-1, self.num_classes, box_dim)
        chosen = flat[torch.arange(flat.shape[0], device=flat.device), classes]
        return list(chosen.split([len(p) for p in proposals]))

    def predict_probs(self, predictions, proposals: List[Instances]) -> List[torch.Tensor]:
        """Softmax class probabilities per image, (Ri, K+1)."""
        logits, _ = predictions
        return list(F.softmax(logits, dim=-1).split([len(p) for p in proposals]))

    def inference(self, predictions, proposals: List[Instances]):
        """This stage alone as a detector: `fast_rcnn_inference` on its boxes and probabilities."""
        return fast_rcnn_inference(
            self.predict_boxes(predictions, proposals),
            self.predict_probs(predictions, proposals),
            [p.image_size for p in proposals],
            self.test_score_thresh,
            self.test_nms_thresh,
            self.test_topk_per_image,
        )

    def _log_accuracy(self, logits: torch.Tensor, gt_classes: torch.Tensor) -> None:
        """Classification accuracy and foreground recall, under the caller's event-storage name scope."""
        if gt_classes.numel() == 0:
            return
        pred = logits.argmax(dim=1)
        fg = gt_classes < self.num_classes
        fg_count = fg.sum().clamp(min=1)
        # One device-to-host copy for the four statistics (each .item() would synchronise a GPU on its own).
        accuracy, num_fg, fg_accuracy, false_negative = torch.stack([
            (pred == gt_classes).float().mean(),
            fg.sum().float(),
            ((pred == gt_classes) & fg).sum() / fg_count,
            ((pred == self.num_classes) & fg).sum() / fg_count,
        ]).tolist()
        storage = get_event_storage()
        storage.put_scalar("fast_rcnn/cls_accuracy", accuracy)
        if num_fg > 0:
            storage.put_scalar("fast_rcnn/fg_cls_accuracy", fg_accuracy)
            storage.put_scalar("fast_rcnn/false_negative", false_negative)
