"""Test-time augmentation for (cascade) R-CNNs: Detectron2's `GeneralizedRCNNWithTTA`, with each cascade stage's own
detections merged stage by stage, so that per-stage evaluation reports every stage under TTA as well.

Detectron2's procedure, unchanged: the image at each of `TEST.AUG.MIN_SIZES` (shorter side, longer side at most
`MAX_SIZE`), and flipped where `FLIP`; the boxes of all versions, mapped back to the image, merged by class-wise NMS
(`ROI_HEADS.NMS_THRESH_TEST`, at most `TEST.DETECTIONS_PER_IMAGE`); the mask head then runs on the merged boxes in
every version and the masks are averaged. Where the heads return stage detections (`return_stage_detections`), the
rows of stage t of all versions are merged the same way, apart from the other stages' and the model's own rows.

`tta_config(model, ...)` gives the yacs config `GeneralizedRCNNWithTTA` reads, from the built model, so LazyConfig
and yacs runs make it alike.
"""

from typing import List, Sequence

import torch

from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import GeneralizedRCNNWithTTA
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Instances

from .cascade_roi_heads import CascadeRCNNROIHeads, _with_stage_rows, split_stage_detections

__all__ = ["CascadeRCNNWithTTA", "tta_config"]


def tta_config(model: torch.nn.Module, min_sizes: Sequence[int], max_size: int, flip: bool) -> CfgNode:
    """The keys `GeneralizedRCNNWithTTA` and its `DatasetMapperTTA` read, for `model` (a GeneralizedRCNN): the
    augmentations given, and the model's own classes, NMS threshold, detections per image and heads."""
    heads = model.roi_heads
    predictor = heads.box_predictor[-1] if isinstance(heads.box_predictor, torch.nn.ModuleList) else heads.box_predictor
    cfg = get_cfg()
    cfg.TEST.AUG.ENABLED = True
    cfg.TEST.AUG.MIN_SIZES = tuple(int(s) for s in min_sizes)
    cfg.TEST.AUG.MAX_SIZE = int(max_size)
    cfg.TEST.AUG.FLIP = bool(flip)
    cfg.INPUT.FORMAT = model.input_format
    cfg.MODEL.MASK_ON = bool(getattr(heads, "mask_on", False))
    cfg.MODEL.KEYPOINT_ON = bool(getattr(heads, "keypoint_on", False))
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = heads.num_classes
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = float(predictor.test_nms_thresh)
    cfg.TEST.DETECTIONS_PER_IMAGE = int(predictor.test_topk_per_image)
    cfg.freeze()
    return cfg


class CascadeRCNNWithTTA(GeneralizedRCNNWithTTA):
    """`GeneralizedRCNNWithTTA` (same arguments: cfg, model, tta_mapper, batch_size) for models with our cascade heads
    too: the model's own detections are Detectron2's TTA result; stage detections, where the heads return them, are
    merged per stage and come back as rows with a `stage` field, as without TTA."""

    def _inference_one_image(self, input):
        self._stage_detections: List = []  # filled by the box pass below, one (boxes, scores, classes) per stage
        result = super()._inference_one_image(input)
        if self._stage_detections:
            shape = (input["height"], input["width"])
            stages = [
                detector_postprocess(self._merge_detections(*group, shape), *shape) for group in self._stage_detections
            ]
            result["instances"] = _with_stage_rows(result["instances"], stages)
        return result

    def _get_augmented_boxes(self, augmented_inputs, tfms):
        outputs = self._batch_inference(augmented_inputs)
        heads = self.model.roi_heads
        num_stages = heads.num_cascade_stages if isinstance(heads, CascadeRCNNROIHeads) else 0
        own, stages = zip(*(split_stage_detections(o, num_stages) for o in outputs))
        self._stage_detections = [_in_original_image(group, tfms) for group in zip(*stages)]
        return _in_original_image(own, tfms)


def _in_original_image(outputs: Sequence[Instances], tfms):
    """(boxes (R, 4) in the original image, scores [R], classes [R]) of the detections of each augmented version,
    as Detectron2's `GeneralizedRCNNWithTTA._get_augmented_boxes` gathers them."""
    all_boxes, all_scores, all_classes = [], [], []
    for output, tfm in zip(outputs, tfms):
        boxes = output.pred_boxes.tensor
        original = tfm.inverse().apply_box(boxes.cpu().numpy())
        all_boxes.append(torch.from_numpy(original).to(boxes.device))
        all_scores.extend(output.scores)
        all_classes.extend(output.pred_classes)
    return torch.cat(all_boxes, dim=0), all_scores, all_classes
