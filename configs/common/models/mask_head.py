"""The mask branch of Detectron2's Mask R-CNN FPN (its model zoo's `common/models/mask_rcnn_fpn.py`), pooling with
`FastROIPooler`: what the Cascade Mask R-CNN configs add to the cascade model."""

from cascade_det.modeling import FastROIPooler

from detectron2 import model_zoo

_mask_rcnn = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model.roi_heads
mask_in_features = _mask_rcnn.mask_in_features
mask_pooler = _mask_rcnn.mask_pooler
mask_pooler._target_ = FastROIPooler
mask_head = _mask_rcnn.mask_head
