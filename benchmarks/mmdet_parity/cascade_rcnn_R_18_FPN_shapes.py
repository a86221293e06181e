"""Ours, for the end-to-end comparison with MMDetection (benchmarks/mmdet_parity_end_to_end.py): the quickstart's
model, data and schedule (R18-FPN from scratch on the embedded shapes, AdamW) with MMDetection's cascade recipe
(configs/COCO/cascade_rcnn_R_50_FPN_1x.py's choices), so that the same network trains under both frameworks.
Its twin is mmdet_cascade_rcnn_r18_fpn_shapes.py beside it."""

from cascade_det.modeling import lazy_cascade_stages

from detectron2.layers import ShapeSpec

from ...configs.COCO.cascade_rcnn_R_50_FPN_1x import _MMDETECTION_RPN_ASSIGNMENT, TARGET_STDS
from ...configs.Shapes.cascade_rcnn_R_18_FPN import CHANNELS, dataloader, lr_multiplier, model, optimizer, train

model.roi_heads.update(
    **lazy_cascade_stages(
        bbox_reg_weights=[tuple(1.0 / s for s in stds) for stds in TARGET_STDS],
        pooled_shape=ShapeSpec(channels=CHANNELS, height=7, width=7),
        fc_dims=(256, 256),
        box_reg_loss_type="smooth_l1",
        smooth_l1_beta=1.0,
    ),
    stage_sampling="resample",
    stage_loss_weights=[1.0, 0.5, 0.25],
    test_score_ensemble="mean_logits",
)
model.proposal_generator.update(smooth_l1_beta=1.0 / 9, **_MMDETECTION_RPN_ASSIGNMENT)
train.update(output_dir="./output/mmdet_parity_ours", eval_period=0)
