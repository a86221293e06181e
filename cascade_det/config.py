"""yacs defaults for cascade_det. LazyConfig users set the same things as constructor arguments
(`configs/common/models/cascade_rcnn.py`)."""
from typing import Sequence

from detectron2.config import CfgNode as CN
from detectron2.layers import ShapeSpec

__all__ = ["add_cascade_config", "lazy_cascade_stages"]


def add_cascade_config(cfg: CN) -> CN:
    """Add cascade_det's keys to a Detectron2 yacs config (in place; returns it).

    Detectron2's own cascade keys are reused as they are, so an existing cascade config keeps its meaning:
      MODEL.ROI_BOX_CASCADE_HEAD.IOUS              one IoU threshold per stage; the number of stages
      MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS  one (wx, wy, ww, wh) box-coder weight tuple per stage
    and these are added (plus TEST.PER_STAGE_EVAL: also report each stage's AP, see PerStageCOCOEvaluator):
      PREDICTOR_NAME       the box predictor class in CASCADE_BOX_PREDICTOR_REGISTRY
      STAGE_SAMPLING       "relabel" (Detectron2: every refined box re-labelled at the stage's IoU) or "resample"
                           (MMDetection: GT dropped, re-added and batch_size_per_image RoIs re-sampled each stage)
      STAGE_LOSS_WEIGHTS   [] = Detectron2's semantics (stage losses summed, gradient into the shared region
                           features scaled by 1/T); one weight per stage (e.g. [1, 0.5, 0.25], MMDetection's)
                           multiplies each stage's losses instead, without gradient scaling
      TEST_SCORE_ENSEMBLE  "mean_probs" (Detectron2), "mean_logits" (MMDetection), "last", or "stageK" for one
                           stage (K counted from 0)
    """
    cascade = cfg.MODEL.ROI_BOX_CASCADE_HEAD
    cascade.PREDICTOR_NAME = "CascadeOutputLayers"
    cascade.STAGE_SAMPLING = "relabel"
    cascade.STAGE_LOSS_WEIGHTS = []
    cascade.TEST_SCORE_ENSEMBLE = "mean_probs"
    # Box loss per stage, e.g. ["smooth_l1", "smooth_l1", "giou"] and [0.0, 1.0, 0.0]; [] = ROI_BOX_HEAD's for all.
    cascade.BBOX_REG_LOSS_TYPES = []
    cascade.SMOOTH_L1_BETAS = []
    cascade.MASK_PER_STAGE = False  # True: one mask head per stage, masks averaged at test (MMDetection)
    cascade.MASK_TRAIN_STAGE = 0  # one mask head: trained on this stage's RoIs (0 Detectron2, T-1 the authors')
    # Pool with cascade_det's multi-threaded RoIAlign (same outputs up to float rounding); False: torchvision's.
    cascade.FAST_ROI_ALIGN = True
    # Speed options that keep outputs (cascade_det.modeling.speed), applied by CascadeTrainer.build_model.
    cfg.MODEL.SPEED = CN()
    cfg.MODEL.SPEED.FOLD_FROZEN_BN = True
    cfg.MODEL.SPEED.CHANNELS_LAST_INFERENCE = True
    # Load checkpoints with arbitrary unpickling (runs code a file may carry): only for trusted files.
    cfg.MODEL.ALLOW_UNSAFE_PICKLE = False
    # Evaluate each stage's own detections too (cascade_det.evaluation.PerStageCOCOEvaluator).
    cfg.TEST.PER_STAGE_EVAL = False
    # Detectron2's cascade is class-agnostic; this is the default a cascade config starts from.
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    return cfg


def lazy_cascade_stages(
    ious: Sequence[float] = (0.5, 0.6, 0.7),
    bbox_reg_weights: Sequence[Sequence[float]] = ((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)),
    pooled_shape: ShapeSpec = ShapeSpec(channels=256, height=7, width=7),
    fc_dims: Sequence[int] = (1024, 1024),
    predictor=None,
    **predictor_kwargs,
) -> dict:
    """The per-stage parts of `CascadeRCNNROIHeads` as LazyConfig nodes, one set per IoU threshold:
    `model.roi_heads.update(**lazy_cascade_stages(ious=[0.5, 0.6, 0.7, 0.75], bbox_reg_weights=[...]))`
    changes the number of stages in one place. Defaults are the paper's (and both frameworks') 3 stages.
    `predictor` is the box predictor class (default `CascadeOutputLayers`); `predictor_kwargs` go to each
    stage's predictor (e.g. `box_reg_loss_type="giou"`)."""
    from detectron2.config import LazyCall as L
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead

    from .modeling import CascadeOutputLayers, check_cascade_stages

    check_cascade_stages(ious, bbox_reg_weights)
    predictor = predictor or CascadeOutputLayers
    return dict(
        box_heads=[
            L(FastRCNNConvFCHead)(input_shape=pooled_shape, conv_dims=[], fc_dims=list(fc_dims)) for _ in ious
        ],
        box_predictors=[
            L(predictor)(
                input_shape=ShapeSpec(channels=fc_dims[-1]),
                box2box_transform=L(Box2BoxTransform)(weights=tuple(weights)),
                num_classes="${...num_classes}",
                **predictor_kwargs,
            )
            for weights in bbox_reg_weights
        ],
        proposal_matchers=[
            L(Matcher)(thresholds=[float(iou)], labels=[0, 1], allow_low_quality_matches=False) for iou in ious
        ],
    )
