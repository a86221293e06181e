"""Cascade R-CNN, ResNet-50-FPN, box only: the model every config in configs/ derives from.

Detectron2's R50-FPN (MSRA-style R-50, BGR, frozen BN; `common/models/mask_rcnn_fpn.py` of its model zoo) with our
cascade ROI heads in Detectron2's semantics (3 stages at IoU 0.5/0.6/0.7; re-labelling; stage losses summed with
gradient scale 1/3; mean of the stages' probabilities at test), pooling with `FastROIPooler` (torchvision's RoIAlign
results, multi-threaded on the CPU; Detectron2's `ROIPooler` is a drop-in alternative).
"""

from cascade_det.modeling import CascadeRCNNROIHeads, FastROIPooler, lazy_cascade_stages, resnet_stages

from detectron2 import model_zoo

model = model_zoo.get_config("common/models/mask_rcnn_fpn.py").model
# A single-stage head's arguments, and the mask head (Cascade Mask R-CNN configs put it back).
for key in ("box_head", "box_predictor", "proposal_matcher", "mask_in_features", "mask_pooler", "mask_head"):
    model.roi_heads.pop(key)
# Any depth by one override (model.backbone.bottom_up.stages.depth=18): bottleneck-only arguments dropped for 18/34.
model.backbone.bottom_up.stages._target_ = resnet_stages
model.roi_heads.box_pooler._target_ = FastROIPooler
model.roi_heads.update(
    _target_=CascadeRCNNROIHeads,
    **lazy_cascade_stages(),
    stage_loss_weights=None,
    test_score_ensemble="mean_probs",
)
