"""Cascade R-CNN R50-FPN 1x: MMDetection v3.3.0's `cascade-rcnn_r50_fpn_1x_coco` recipe in Detectron2.

Published: box AP 40.3 on COCO val2017 (MMDetection model zoo, 8 GPUs x 2 images). Every other COCO config
derives from this file. What makes it MMDetection's recipe rather than Detectron2's (tests/test_mmdet_training_parity.py
compares a training step with MMDetection's own, loss by loss and gradient by gradient):
  backbone   torchvision-style R-50 (stride in the 3x3 conv), RGB, ImageNet mean/std, frozen stem+res2; the other
             BN layers keep their ImageNet statistics but train their scale and shift (MMDetection's norm_eval)
  RPN        2000 proposals per level before NMS and 2000 after in training, 1000/1000 at test; box loss
             smooth-L1 beta 1/9; anchors crossing the image border are left out of its training, before matching;
             a box's best anchor is positive if its IoU is at least 0.3 (InsideAnchorsRPN, MaxIoUMatcher)
  cascade    512 RoIs re-sampled at 25% positive every stage, stage loss weights [1, 0.5, 0.25], smooth-L1
             beta 1 box loss on deltas scaled by 1/target_std (0.1, 0.05, 0.033 for x, y), mean of the stages'
             logits at test
  schedule   SGD lr 0.02 at batch 16, momentum 0.9, weight decay 1e-4 on every parameter (norms and biases
             included), 12 epochs, lr x0.1 after epochs 8 and 11, 500 linear warm-up iterations from 0.001
Initialise from torchvision's ImageNet ResNet-50 file (train.init_checkpoint=/path/to/resnet50-0676ba61.pth, loaded
and renamed as it is); nothing is downloaded.
"""

from cascade_det.modeling import FrozenStatsBatchNorm2d, InsideAnchorsRPN, MaxIoUMatcher, lazy_cascade_stages

from detectron2 import model_zoo
from detectron2.config import LazyCall as L

from ..common.coco_schedule import epoch_schedule
from ..common.data.coco import dataloader
from ..common.models.cascade_rcnn_fpn import model
from ..common.train import test, train

_bottom_up = model.backbone.bottom_up
_bottom_up.stages.stride_in_1x1 = False  # torchvision ("pytorch") style
_bottom_up.freeze_at = 2
_bottom_up.stem.norm = _bottom_up.stages.norm = L(FrozenStatsBatchNorm2d.norm)()
model.input_format = "RGB"
model.pixel_mean = [123.675, 116.28, 103.53]
model.pixel_std = [58.395, 57.12, 57.375]

# MMDetection's anchor assignment: anchors crossing the image border (allowed_border=0) take no part in matching
# or in the loss; a box's best anchor becomes positive if its IoU is at least 0.3 (min_pos_iou).
_MMDETECTION_RPN_ASSIGNMENT = {
    "_target_": InsideAnchorsRPN,
    "anchor_boundary_thresh": 0,
    "anchor_matcher": L(MaxIoUMatcher)(
        thresholds=[0.3, 0.7], labels=[0, -1, 1], allow_low_quality_matches=True, low_quality_min_iou=0.3
    ),
}

_rpn = model.proposal_generator
_rpn.update(pre_nms_topk=(2000, 1000), post_nms_topk=(2000, 1000), smooth_l1_beta=1.0 / 9)
_rpn.update(_MMDETECTION_RPN_ASSIGNMENT)

# MMDetection's box coder divides the deltas by target_stds; Detectron2's multiplies by weights: weights = 1 / std.
TARGET_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
model.roi_heads.update(
    num_classes=80,
    batch_size_per_image=512,
    positive_fraction=0.25,
    **lazy_cascade_stages(
        bbox_reg_weights=[tuple(1.0 / s for s in stds) for stds in TARGET_STDS],
        box_reg_loss_type="smooth_l1",
        smooth_l1_beta=1.0,
    ),
    stage_sampling="resample",
    stage_loss_weights=[1.0, 0.5, 0.25],
    test_score_ensemble="mean_logits",
)

train.max_iter, lr_multiplier = epoch_schedule(epochs=12, step_epochs=[8, 11])
train.update(
    output_dir="./output/coco_cascade_rcnn_R_50_FPN_1x",
    eval_period=train.max_iter,
    init_checkpoint="",
    per_stage_eval=True,  # each stage's AP at IoU 0.50..0.95, besides the usual COCO metrics
    # Written for 8 GPUs x 2 images: on N processes the batch becomes 2N, lr 0.02*N/8, iterations x 8/N.
    reference_world_size=8,
)
train.checkpointer.period = train.max_iter // 12  # once per epoch

optimizer = model_zoo.get_config("common/optim.py").SGD
optimizer.lr = 0.02
optimizer.params.weight_decay_norm = 1e-4  # MMDetection decays every parameter alike
