"""cascade_det's options: one table of every key it adds, with its default, for both config styles.

Each `Option` names the yacs key (added to a Detectron2 `CfgNode` by `add_cascade_config`) and, for run settings,
the LazyConfig key (`configs/common/train.py` writes `lazy_train_defaults()` into `train`). The model options are
also the constructor arguments of `CascadeRCNNROIHeads` / `CascadeOutputLayers`, whose keyword defaults come from
this table, so a default is written once.

`lazy_cascade_stages` builds the per-stage parts of the cascade heads as LazyConfig nodes.
"""

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

from detectron2.config import CfgNode as CN
from detectron2.layers import ShapeSpec

__all__ = [
    "CASCADE_HEAD",
    "OPTIONS",
    "Option",
    "add_cascade_config",
    "cascade_head_default",
    "lazy_cascade_stages",
    "lazy_train_defaults",
    "option_default",
    "yacs_option",
]

CASCADE_HEAD = "MODEL.ROI_BOX_CASCADE_HEAD"


@dataclass(frozen=True)
class Option:
    """One option cascade_det adds: its yacs key, its LazyConfig key (None: a constructor argument of the heads or
    predictors instead) and its default."""

    yacs: str
    lazy: Optional[str]
    default: Any
    meaning: str


OPTIONS = [
    # Cascade heads (LazyConfig: CascadeRCNNROIHeads / CascadeOutputLayers arguments of the same name, lower case).
    Option(
        f"{CASCADE_HEAD}.PREDICTOR_NAME",
        None,
        "CascadeOutputLayers",
        "box predictor class in CASCADE_BOX_PREDICTOR_REGISTRY",
    ),
    Option(
        f"{CASCADE_HEAD}.STAGE_SAMPLING",
        None,
        "relabel",
        "relabel (Detectron2) or resample (MMDetection, the authors' code)",
    ),
    Option(
        f"{CASCADE_HEAD}.STAGE_LOSS_WEIGHTS",
        None,
        [],
        "[] = Detectron2 (losses summed, gradient into RoI features x 1/T); one weight per stage otherwise",
    ),
    Option(f"{CASCADE_HEAD}.TEST_SCORE_ENSEMBLE", None, "mean_probs", "mean_probs, mean_logits, last or stageK"),
    Option(f"{CASCADE_HEAD}.BBOX_REG_LOSS_TYPES", None, [], "one box loss per stage; [] = ROI_BOX_HEAD's for all"),
    Option(f"{CASCADE_HEAD}.SMOOTH_L1_BETAS", None, [], "one smooth-L1 beta per stage; [] = ROI_BOX_HEAD's for all"),
    Option(f"{CASCADE_HEAD}.MASK_PER_STAGE", None, False, "one mask head per stage, averaged at test (MMDetection)"),
    Option(f"{CASCADE_HEAD}.MASK_TRAIN_STAGE", None, 0, "with one mask head: the stage whose RoIs train it"),
    Option(
        f"{CASCADE_HEAD}.FAST_ROI_ALIGN",
        None,
        True,
        "pool with FastROIPooler (multi-threaded RoIAlign on CPU); False: Detectron2's ROIPooler",
    ),
    Option(
        f"{CASCADE_HEAD}.RETURN_STAGE_DETECTIONS",
        None,
        False,
        "inference also returns each stage's own detections (rows with field stage = t; the model's own: -1)",
    ),
    # RPN (InsideAnchorsRPN: MMDetection's anchor assignment; LazyConfig: MaxIoUMatcher's argument of the same name).
    Option(
        "MODEL.RPN.LOW_QUALITY_MIN_IOU",
        None,
        0.0,
        "InsideAnchorsRPN: the IoU a box's best anchor needs to become positive anyway (MMDetection's min_pos_iou)",
    ),
    # Run settings (read by the trainer through cascade_det.engine.RunConfig).
    Option("TEST.PER_STAGE_EVAL", "train.per_stage_eval", False, "also evaluate each stage's own detections"),
    Option(
        "TEST.EVAL_BACKEND",
        "train.eval_backend",
        "faster-coco-eval",
        "COCO evaluation: faster-coco-eval (C++) or pycocotools (same numbers, slower)",
    ),
    Option(
        "MODEL.ALLOW_UNSAFE_PICKLE",
        "train.allow_unsafe_pickle",
        False,
        "load checkpoints with arbitrary unpickling (runs code a file may carry): trusted files only",
    ),
    Option(
        "MODEL.ALLOW_PARTIAL_CHECKPOINT",
        "train.allow_partial_checkpoint",
        False,
        "accept a checkpoint that leaves part of the model (--eval-only) or of its backbone (training) unloaded",
    ),
    Option(
        "MODEL.SPEED.FOLD_FROZEN_BN",
        "train.speed.fold_frozen_bn",
        True,
        "frozen BN folded into the convolutions (same outputs and gradients)",
    ),
    Option(
        "MODEL.SPEED.CHANNELS_LAST_INFERENCE",
        "train.speed.channels_last_inference",
        True,
        "channels-last convolutions at inference",
    ),
    Option(
        "SOLVER.REFERENCE_WORLD_SIZE",
        "train.reference_world_size",
        0,
        "> 0: batch, lr and schedule scale with the number of processes",
    ),
    Option(
        "SOLVER.LOSS_EXPLOSION_FACTOR",
        "train.loss_explosion_factor",
        1e4,
        "stop when the total loss exceeds this x the median of the last 100 iterations' (0: off)",
    ),
    Option(
        "DATALOADER.SKIP_UNREADABLE_IMAGES",
        "dataloader.train.skip_unreadable_images",
        False,
        "skip training images that cannot be read (logged and counted) instead of stopping",
    ),
]
_BY_YACS = {o.yacs: o for o in OPTIONS}


def cascade_head_default(name: str) -> Any:
    """Default of the cascade-head option `name` (e.g. "STAGE_SAMPLING"); the heads' keyword defaults use it."""
    return option_default(f"{CASCADE_HEAD}.{name}")


def option_default(yacs_key: str) -> Any:
    """Default of the option whose yacs key is `yacs_key`; the constructors' keyword defaults use it."""
    return _BY_YACS[yacs_key].default


def yacs_option(cfg: CN, key: str) -> Any:
    """`key` (e.g. "TEST.PER_STAGE_EVAL") of a yacs config, or its default when the config lacks it (a user's own
    Detectron2 config without add_cascade_config gets Detectron2's behaviour)."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, CN) or part not in node:
            return _BY_YACS[key].default
        node = node[part]
    return node


def add_cascade_config(cfg: CN) -> CN:
    """Add every yacs key of `OPTIONS` with its default to a Detectron2 config (in place; returns it).

    Detectron2's own cascade keys keep their meaning: MODEL.ROI_BOX_CASCADE_HEAD.IOUS (one IoU threshold per stage;
    the number of stages) and .BBOX_REG_WEIGHTS (one box-coder weight tuple per stage)."""
    for option in OPTIONS:
        *parents, leaf = option.yacs.split(".")
        node = cfg
        for part in parents:
            if part not in node:
                node[part] = CN()
            node = node[part]
        node[leaf] = list(option.default) if isinstance(option.default, list) else option.default
    # Detectron2's cascade is class-agnostic; this is the default a cascade config starts from.
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    return cfg


def lazy_train_defaults() -> Dict[str, Any]:
    """The `train.*` run settings of `OPTIONS` with their defaults, nested as `train.update(**...)` takes them."""
    out: Dict[str, Any] = {}
    for option in OPTIONS:
        if option.lazy is None or not option.lazy.startswith("train."):
            continue
        *parents, leaf = option.lazy.split(".")[1:]
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = option.default
    return out


_POOLED_SHAPE = ShapeSpec(channels=256, height=7, width=7)  # FPN features pooled to 7x7, as in Detectron2


def lazy_cascade_stages(
    ious: Sequence[float] = (0.5, 0.6, 0.7),
    bbox_reg_weights: Sequence[Sequence[float]] = ((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)),
    pooled_shape: ShapeSpec = _POOLED_SHAPE,
    fc_dims: Sequence[int] = (1024, 1024),
    predictor=None,
    **predictor_kwargs,
) -> dict:
    """The per-stage parts of `CascadeRCNNROIHeads` as LazyConfig nodes, one set per IoU threshold:
    `model.roi_heads.update(**lazy_cascade_stages(ious=[0.5, 0.6, 0.7, 0.75], bbox_reg_weights=[...]))`
    changes the number of stages in one place. Defaults are the paper's (and both frameworks') 3 stages.
    `predictor` is the box predictor class (default `CascadeOutputLayers`); `predictor_kwargs` go to each
    stage's predictor (e.g. `box_reg_loss_type="giou"`); the test score threshold defaults to 0.05, as in
    Detectron2's configs (`FastRCNNOutputLayers` itself defaults to 0)."""
    from detectron2.config import LazyCall as L
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead

    from .modeling import CascadeOutputLayers, check_cascade_stages

    check_cascade_stages(ious, bbox_reg_weights, keys=("lazy_cascade_stages(ious)", "bbox_reg_weights"))
    predictor = predictor or CascadeOutputLayers
    predictor_kwargs = {"test_score_thresh": 0.05, **predictor_kwargs}
    return {
        "box_heads": [
            L(FastRCNNConvFCHead)(input_shape=pooled_shape, conv_dims=[], fc_dims=list(fc_dims)) for _ in ious
        ],
        "box_predictors": [
            L(predictor)(
                input_shape=ShapeSpec(channels=fc_dims[-1]),
                box2box_transform=L(Box2BoxTransform)(weights=tuple(weights)),
                num_classes="${...num_classes}",
                **predictor_kwargs,
            )
            for weights in bbox_reg_weights
        ],
        "proposal_matchers": [
            L(Matcher)(thresholds=[float(iou)], labels=[0, 1], allow_low_quality_matches=False) for iou in ious
        ],
    }
