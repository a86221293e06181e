"""The mask branch of Detectron2's Mask R-CNN FPN (its model zoo's `common/models/mask_rcnn_fpn.py`), pooling with
`FastROIPooler`: what the Cascade Mask R-CNN configs add to the cascade model."""

import copy

from cascade_det.modeling import FastROIPooler

from detectron2 import model_zoo

_mask_rcnn = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model.roi_heads
mask_in_features = _mask_rcnn.mask_in_features
mask_pooler = _mask_rcnn.mask_pooler
mask_pooler._target_ = FastROIPooler
mask_head = _mask_rcnn.mask_head


def add_mask_heads(model, dataloader, per_stage: bool = True) -> None:
    """Make a box cascade config a Cascade Mask R-CNN one: the mask branch above on `model.roi_heads` (with
    `per_stage`, one head per cascade stage, MMDetection's; else one head, Detectron2's), instance masks in the
    training data and "segm" in the evaluation. A function, not a module-level dict: LazyConfig keeps every public
    dict of a config module as a top-level key, and those would then be saved with every config that imports them."""
    head = copy.deepcopy(mask_head)
    # The roi_heads' num_classes, seen from the head: inside the list of heads one level further up.
    head.num_classes = "${...num_classes}" if per_stage else "${..num_classes}"
    model.roi_heads.update(
        mask_in_features=mask_in_features,
        mask_pooler=mask_pooler,
        mask_head=[head for _ in model.roi_heads.box_heads] if per_stage else head,
    )
    dataloader.train.mapper.use_instance_mask = True
    dataloader.evaluator.tasks = ("bbox", "segm")
