"""Box predictors for the cascade stages, and the registry a yacs config names them from.

`CascadeOutputLayers` is Detectron2's `FastRCNNOutputLayers` (same layers, initialisation, losses, box decoding,
post-processing and options: smooth-L1 / GIoU / DIoU / CIoU box losses, and on Detectron2 main federated loss and
sigmoid cross-entropy) with what a cascade stage adds: a `from_config` that reads the stage's own box-coder weights
and box loss, and `refine_boxes`, which turns the stage's predictions into the next stage's input boxes (also for
class-specific regression, which Detectron2's built-in cascade refuses).

Detectron2 has no registry for box predictors (its `CascadeROIHeads` always builds `FastRCNNOutputLayers`), so
`MODEL.ROI_BOX_CASCADE_HEAD.PREDICTOR_NAME` names a class in `CASCADE_BOX_PREDICTOR_REGISTRY`; LazyConfig users name
the class directly.

Shape shorthand: N images; Ri boxes in image i; R boxes in the batch; K foreground classes; B box dimension (4).
gt_classes are in [0, K]; K is the background class (the last logit), as in Detectron2.
"""

from typing import List

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Instances
from detectron2.utils.registry import Registry

from ..config import CASCADE_HEAD, yacs_option
from ..errors import ConfigValueError
from ..tracing import dynamic_len as len  # noqa: A004  (sizes stay dynamic when traced)

__all__ = ["BOX_REG_LOSS_TYPES", "CASCADE_BOX_PREDICTOR_REGISTRY", "CascadeOutputLayers", "build_cascade_box_predictor"]

CASCADE_BOX_PREDICTOR_REGISTRY = Registry("CASCADE_BOX_PREDICTOR")
CASCADE_BOX_PREDICTOR_REGISTRY.__doc__ = """
Registry for the box predictor of one cascade stage: maps the box head's features to class logits (R, K+1)
and box deltas (R, 4) or (R, 4K). Called as `obj(cfg, input_shape, stage=t)`.
"""

BOX_REG_LOSS_TYPES = ("smooth_l1", "giou", "diou", "ciou")  # what FastRCNNOutputLayers.box_reg_loss computes


def build_cascade_box_predictor(cfg, input_shape: ShapeSpec, stage: int) -> nn.Module:
    """Build the predictor named by `MODEL.ROI_BOX_CASCADE_HEAD.PREDICTOR_NAME` for cascade stage `stage`."""
    return CASCADE_BOX_PREDICTOR_REGISTRY.get(yacs_option(cfg, f"{CASCADE_HEAD}.PREDICTOR_NAME"))(
        cfg, input_shape, stage=stage
    )


def _per_stage(cfg, key: str, stage: int, fallback):
    """Stage `stage`'s entry of the per-stage list `MODEL.ROI_BOX_CASCADE_HEAD.<key>`, or `fallback` when the
    list is empty (one value for every stage)."""
    values = list(yacs_option(cfg, f"{CASCADE_HEAD}.{key}"))
    if not values:
        return fallback
    num_stages = len(cfg.MODEL.ROI_BOX_CASCADE_HEAD.IOUS)
    if len(values) != num_stages:
        raise ConfigValueError(
            f"{CASCADE_HEAD}.{key} has {len(values)} entries for {num_stages} stages: give one per stage, or none"
        )
    return values[stage]


@CASCADE_BOX_PREDICTOR_REGISTRY.register()
class CascadeOutputLayers(FastRCNNOutputLayers):
    """
    Detectron2's `FastRCNNOutputLayers` as one cascade stage: class logits `cls_score` (K+1 outputs) and box deltas
    `bbox_pred` (4 outputs class-agnostic, 4K class-specific). Parameter names are Detectron2's, so its cascade
    checkpoints load as they are.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        box2box_transform: Box2BoxTransform,
        num_classes: int,
        cls_agnostic_bbox_reg: bool = True,
        loss_weight=1.0,
        **kwargs,
    ):
        """
        Args:
            input_shape, box2box_transform, num_classes, and every other argument: as `FastRCNNOutputLayers`. The
                defaults are a cascade stage's: class-agnostic regression (as in the paper).
            loss_weight: a float multiplies both losses; a dict weighs "loss_cls" and "loss_box_reg" by name.
        """
        # The one check of each (yacs configs reach it through from_config; messages name both spellings).
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigValueError(
                f"num_classes (yacs: MODEL.ROI_HEADS.NUM_CLASSES) must be an integer >= 1, got {num_classes}"
            )
        box_loss = kwargs.get("box_reg_loss_type", "smooth_l1")
        if box_loss not in BOX_REG_LOSS_TYPES:
            raise ConfigValueError(
                f"box_reg_loss_type={box_loss!r} (yacs: MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE, or per stage "
                f"{CASCADE_HEAD}.BBOX_REG_LOSS_TYPES) is not one of {BOX_REG_LOSS_TYPES}"
            )
        if isinstance(loss_weight, (int, float)):
            loss_weight = float(loss_weight)
        loss_weight = {
            "loss_cls": 1.0,
            "loss_box_reg": 1.0,
            **(
                {"loss_cls": loss_weight, "loss_box_reg": loss_weight}
                if isinstance(loss_weight, float)
                else loss_weight
            ),
        }
        super().__init__(
            input_shape,
            box2box_transform=box2box_transform,
            num_classes=num_classes,
            cls_agnostic_bbox_reg=cls_agnostic_bbox_reg,
            loss_weight=loss_weight,
            **kwargs,
        )

    @classmethod
    def from_config(cls, cfg, input_shape, stage: int = 0):
        """Detectron2's yacs keys, with the stage's own box coder (`ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS[stage]`)
        and box loss (`BBOX_REG_LOSS_TYPES[stage]` / `SMOOTH_L1_BETAS[stage]` when given)."""
        ret = super().from_config(cfg, input_shape)
        ret["box2box_transform"] = Box2BoxTransform(weights=cfg.MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS[stage])
        ret["box_reg_loss_type"] = _per_stage(cfg, "BBOX_REG_LOSS_TYPES", stage, ret["box_reg_loss_type"])
        ret["smooth_l1_beta"] = _per_stage(cfg, "SMOOTH_L1_BETAS", stage, ret["smooth_l1_beta"])
        return ret

    def refine_boxes(self, predictions, proposals: List[Instances]) -> List[torch.Tensor]:
        """One refined box per region, per image (Ri, 4): the next stage's input boxes.

        Class-specific regression picks each region's class: its ground-truth class for a foreground region
        in training, else the highest-scoring foreground class (as MMDetection's `refine_bboxes`)."""
        boxes = self.predict_boxes(predictions, proposals)
        if self.bbox_pred.out_features == len(self.box2box_transform.weights) or not proposals:
            return list(boxes)
        logits, _ = predictions
        classes = logits[:, :-1].argmax(dim=1)
        if proposals[0].has("gt_classes"):
            gt_classes = torch.cat([p.gt_classes for p in proposals])
            classes = torch.where(gt_classes < self.num_classes, gt_classes, classes)
        box_dim = len(self.box2box_transform.weights)
        flat = torch.cat(boxes).view(-1, self.num_classes, box_dim)
        chosen = flat[torch.arange(flat.shape[0], device=flat.device), classes]
        return list(chosen.split([len(p) for p in proposals]))

    def probs_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities (R, K+1) from logits, as `predict_probs` computes them: softmax, or sigmoid where the
        predictor trains with sigmoid cross-entropy (`use_sigmoid_ce`, an option of Detectron2 main)."""
        return logits.sigmoid() if getattr(self, "use_sigmoid_ce", False) else F.softmax(logits, dim=-1)
