"""MMDetection's RPN anchor assignment in Detectron2's RPN: what `configs/COCO/` (MMDetection's recipe) trains with.

Two rules differ from Detectron2's RPN (MMDetection v3.3.0: `AnchorHead` with `allowed_border=0` and
`MaxIoUAssigner(pos_iou_thr=0.7, neg_iou_thr=0.3, min_pos_iou=0.3, match_low_quality=True)`):
  - anchors crossing the image border are left out *before* matching, so a ground-truth box's low-quality match is
    its best anchor inside the image. Detectron2 matches over all anchors and ignores the outside ones afterwards:
    a box near the border whose best anchor crosses it then has no positive anchor at all (13.5% of the boxes of
    the embedded shapes dataset, against 0.04% with MMDetection's rule);
  - a low-quality match needs IoU >= `low_quality_min_iou` (0.3), and takes the anchor over to that box, in box
    order (Detectron2 keeps the anchor's best box and has no minimum).
"""

from typing import List, Tuple

import torch

from detectron2.config import configurable
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.structures import Boxes, Instances, pairwise_iou

from ..config import option_default, yacs_option
from ..errors import ConfigValueError

__all__ = ["InsideAnchorsRPN", "MaxIoUMatcher"]


class MaxIoUMatcher(Matcher):
    """Detectron2's `Matcher` with MMDetection's `MaxIoUAssigner` low-quality rule: for each ground-truth box whose
    best IoU is at least `low_quality_min_iou`, every prediction with that IoU (ties included) becomes positive and
    matched to that box; later boxes win over earlier ones, as MMDetection's loop over boxes does."""

    def __init__(
        self,
        thresholds,
        labels,
        allow_low_quality_matches: bool = True,
        low_quality_min_iou: float = option_default("MODEL.RPN.LOW_QUALITY_MIN_IOU"),
    ):
        super().__init__(thresholds, labels, allow_low_quality_matches=False)
        self.low_quality_matches = allow_low_quality_matches
        self.low_quality_min_iou = float(low_quality_min_iou)

    def __call__(self, match_quality_matrix: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """match_quality_matrix: (M boxes, N predictions) IoU >= 0. Returns (matches (N,) int64, labels (N,) int8)."""
        matches, labels = super().__call__(match_quality_matrix)
        if not self.low_quality_matches or match_quality_matrix.numel() == 0:
            return matches, labels
        best_per_box = match_quality_matrix.max(dim=1).values
        # A box that overlaps no prediction gets no low-quality match (an IoU of 0 would "match" everything).
        eligible = (best_per_box >= self.low_quality_min_iou) & (best_per_box > 0)
        is_best = (match_quality_matrix == best_per_box[:, None]) & eligible[:, None]
        taken = is_best.any(dim=0)
        last_box = is_best.shape[0] - 1 - is_best.flip(0).to(torch.uint8).argmax(dim=0)
        matches[taken] = last_box[taken]
        labels[taken] = 1
        return matches, labels


@PROPOSAL_GENERATOR_REGISTRY.register()
class InsideAnchorsRPN(RPN):
    """Detectron2's RPN whose training leaves anchors crossing the image border (by more than
    `anchor_boundary_thresh` px; it must be >= 0) out of matching, not only out of the loss. Give it a
    `MaxIoUMatcher` for MMDetection's full rule. yacs: `MODEL.PROPOSAL_GENERATOR.NAME: InsideAnchorsRPN`,
    `MODEL.RPN.BOUNDARY_THRESH: 0`, `MODEL.RPN.LOW_QUALITY_MIN_IOU: 0.3`."""

    @configurable
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.anchor_boundary_thresh < 0:
            raise ConfigValueError(
                f"InsideAnchorsRPN: anchor_boundary_thresh={self.anchor_boundary_thresh} keeps every anchor; set it "
                "to 0 (MMDetection's allowed_border) or more (MODEL.RPN.BOUNDARY_THRESH for yacs), or use RPN"
            )

    @classmethod
    def from_config(cls, cfg, input_shape):
        ret = super().from_config(cfg, input_shape)
        ret["anchor_matcher"] = MaxIoUMatcher(
            cfg.MODEL.RPN.IOU_THRESHOLDS,
            cfg.MODEL.RPN.IOU_LABELS,
            allow_low_quality_matches=True,
            low_quality_min_iou=yacs_option(cfg, "MODEL.RPN.LOW_QUALITY_MIN_IOU"),
        )
        return ret

    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: List[Boxes], gt_instances: List[Instances]
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """As `RPN.label_and_sample_anchors` (labels -1/0/1 per anchor and the matched box per anchor, per image),
        with IoU to anchors outside the image set to 0 before matching."""
        anchors = Boxes.cat(anchors)
        labels, matched_boxes = [], []
        for instances in gt_instances:
            boxes = instances.gt_boxes
            inside = anchors.inside_box(instances.image_size, self.anchor_boundary_thresh)
            iou = pairwise_iou(boxes, anchors)
            iou[:, ~inside] = 0.0
            matched_idxs, image_labels = self.anchor_matcher(iou)
            image_labels = image_labels.to(device=boxes.device)
            image_labels[~inside] = -1
            labels.append(self._subsample_labels(image_labels))
            matched_boxes.append(boxes[matched_idxs].tensor if len(boxes) else torch.zeros_like(anchors.tensor))
        return labels, matched_boxes
