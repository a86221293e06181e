"""cascade_det's keys: one table (`OPTIONS`) of every config key it adds or reads, for both config styles.

Each `Option` names the yacs key and the LazyConfig key of one value, its default and what it means:

  * the cascade heads' and the RPN's options (yacs keys only: in a LazyConfig they are constructor arguments of
    `CascadeRCNNROIHeads` / `CascadeOutputLayers` / `MaxIoUMatcher`, whose keyword defaults come from this table);
  * run settings (`setting` names them): cascade_det's own (`add_cascade_config` adds their yacs keys,
    `lazy_train_defaults()` their `train.*` keys) and the Detectron2 keys the trainer reads (`detectron2=True`:
    Detectron2 defines them; not added here). `cascade_det.engine.Run` reads, checks and records each of them.

A key is spelt here once; everything else asks this table. This module imports nothing of cascade_det: it is the
bottom of the package.
"""

from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from detectron2.config import CfgNode as CN

__all__ = [
    "CASCADE_HEAD",
    "EVAL_BACKENDS",
    "OPTIONS",
    "Option",
    "REQUIRED",
    "add_cascade_config",
    "cascade_head_default",
    "get_dotted",
    "lazy_test_defaults",
    "lazy_train_defaults",
    "option",
    "option_default",
    "run_options",
    "set_dotted",
    "setting_keys",
    "yacs_option",
]

CASCADE_HEAD = "MODEL.ROI_BOX_CASCADE_HEAD"
EVAL_BACKENDS = ("faster-coco-eval", "pycocotools")
REQUIRED = object()  # default of a Detectron2 key a LazyConfig must have (its common/train.py writes it)


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _non_negative_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _bool(v) -> bool:
    return isinstance(v, bool)


def _text(v) -> bool:
    return isinstance(v, str)


def _names(v) -> bool:
    return isinstance(v, str) or (isinstance(v, (list, tuple)) and all(isinstance(n, str) for n in v))


def _anything(v) -> bool:
    return True


@dataclass(frozen=True)
class Option:
    """One key of cascade_det: its yacs key (None: yacs has none, the value is always `default` there), its
    LazyConfig key (None: a constructor argument instead), its default, and what it means. A run setting also has
    `setting` (its name in `cascade_det.engine.RunSettings`), a `check` of its value and what the check `expects`
    (for messages); `detectron2=True` marks a key that Detectron2 itself defines."""

    yacs: Optional[str]
    lazy: Optional[str]
    default: Any
    meaning: str
    setting: Optional[str] = None
    check: Callable[[Any], bool] = _anything
    expects: str = ""
    detectron2: bool = False


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
    # Backbones (yacs: build_swin_fpn_backbone / build_convnext_fpn_backbone; LazyConfig: the SwinTransformer /
    # ConvNeXt arguments of the same name, lower case, whose keyword defaults these are: Swin-T and ConvNeXt-T).
    *(
        Option(f"MODEL.SWIN.{key}", None, default, meaning)
        for key, default, meaning in (
            ("EMBED_DIM", 96, "channels of the patch embedding (stage i has EMBED_DIM * 2**i)"),
            ("DEPTHS", [2, 2, 6, 2], "blocks per stage"),
            ("NUM_HEADS", [3, 6, 12, 24], "attention heads per stage"),
            ("WINDOW_SIZE", 7, "attention window side, in tokens"),
            ("MLP_RATIO", 4.0, "MLP hidden channels / channels"),
            ("QKV_BIAS", True, "bias in the query, key, value projection"),
            ("DROP_PATH_RATE", 0.2, "stochastic depth of the last block (linear from 0 over the blocks)"),
            ("PATCH_SIZE", 4, "patch side, in pixels"),
            ("OUT_FEATURES", ["p0", "p1", "p2", "p3"], "stages returned (strides 4, 8, 16, 32)"),
            ("FROZEN_STAGES", -1, "-1 none; 0 the patch embedding; k also the first k stages"),
            ("USE_CHECKPOINT", False, "activation checkpointing of every block (less memory in training)"),
        )
    ),
    *(
        Option(f"MODEL.CONVNEXT.{key}", None, default, meaning)
        for key, default, meaning in (
            ("DEPTHS", [3, 3, 9, 3], "blocks per stage"),
            ("DIMS", [96, 192, 384, 768], "channels per stage"),
            ("DROP_PATH_RATE", 0.4, "stochastic depth of the last block (linear from 0 over the blocks)"),
            ("LAYER_SCALE_INIT_VALUE", 1.0, "initial layer scale"),
            ("OUT_FEATURES", ["p0", "p1", "p2", "p3"], "stages returned (strides 4, 8, 16, 32)"),
            ("FROZEN_STAGES", -1, "-1 none; 0 the stem; k also the first k stages"),
            ("USE_CHECKPOINT", False, "activation checkpointing of every block (less memory in training)"),
        )
    ),
    # ViTDet (yacs: build_vitdet_backbone, Detectron2 main only; LazyConfig: the build_vit arguments (Detectron2's
    # ViT's, and frozen_blocks) of the same name, lower case, but USE_CHECKPOINT = use_act_checkpoint). Defaults:
    # projects/ViTDet's ViT-B.
    *(
        Option(f"MODEL.VIT.{key}", None, default, meaning)
        for key, default, meaning in (
            (
                "IMG_SIZE",
                1024,
                "every input is padded to this square (pixels; INPUT.MAX_SIZE_TRAIN / _TEST must not exceed it); the "
                "global blocks' position size",
            ),
            ("PATCH_SIZE", 16, "patch side, in pixels (the ViT's one stride)"),
            ("EMBED_DIM", 768, "channels of every block"),
            ("DEPTH", 12, "blocks"),
            ("NUM_HEADS", 12, "attention heads per block"),
            ("MLP_RATIO", 4.0, "MLP hidden channels / channels"),
            ("QKV_BIAS", True, "bias in the query, key, value projection"),
            ("DROP_PATH_RATE", 0.1, "stochastic depth of the last block (linear from 0 over the blocks)"),
            ("WINDOW_SIZE", 14, "attention window side of the window blocks, in patches"),
            ("WINDOW_BLOCK_INDEXES", [0, 1, 3, 4, 6, 7, 9, 10], "blocks with window attention; the rest global"),
            ("USE_REL_POS", True, "relative position tables in the attention"),
            ("PRETRAIN_IMG_SIZE", 224, "image size of the pre-training (the absolute position embedding's grid)"),
            ("FROZEN_BLOCKS", -1, "-1 none; 0 the patch and position embeddings; k also the first k blocks"),
            ("USE_CHECKPOINT", False, "activation checkpointing of every block (less memory in training)"),
        )
    ),
    # RPN (InsideAnchorsRPN: MMDetection's anchor assignment; LazyConfig: MaxIoUMatcher's argument of the same name).
    Option(
        "MODEL.RPN.LOW_QUALITY_MIN_IOU",
        None,
        0.0,
        "InsideAnchorsRPN: the IoU a box's best anchor needs to become positive anyway (MMDetection's min_pos_iou)",
    ),
    # The training loader (cascade_det.data.build_train_loader; LazyConfig: its argument of the same name).
    Option(
        "DATALOADER.SKIP_UNREADABLE_IMAGES",
        "dataloader.train.skip_unreadable_images",
        False,
        "skip training images that cannot be read (logged and counted) instead of stopping",
    ),
    # Run settings of cascade_det (read, checked and recorded by cascade_det.engine.Run).
    Option(
        "TEST.PER_STAGE_EVAL",
        "train.per_stage_eval",
        False,
        "also evaluate each stage's own detections",
        "per_stage_eval",
        _bool,
        "true or false",
    ),
    Option(
        "TEST.FINAL_EVAL",
        "train.final_eval",
        True,
        "evaluate after the last iteration (False with eval_period 0: training never evaluates)",
        "final_eval",
        _bool,
        "true or false",
    ),
    Option(
        "TEST.SKIP_UNREADABLE_IMAGES",
        "train.skip_unreadable_test_images",
        False,
        "evaluate a test image that cannot be read as an image without detections (logged and counted: its objects "
        "count as missed) instead of stopping",
        "skip_unreadable_test_images",
        _bool,
        "true or false",
    ),
    Option(
        "TEST.EVAL_BACKEND",
        "train.eval_backend",
        "faster-coco-eval",
        "COCO evaluation: faster-coco-eval (C++) or pycocotools (same numbers, slower)",
        "eval_backend",
        lambda v: v in EVAL_BACKENDS,
        f"one of {EVAL_BACKENDS}",
    ),
    Option(
        "MODEL.ALLOW_UNSAFE_PICKLE",
        "train.allow_unsafe_pickle",
        False,
        "load checkpoints with arbitrary unpickling (runs code a file may carry): trusted files only",
        "allow_unsafe_pickle",
        _bool,
        "true or false",
    ),
    Option(
        "MODEL.ALLOW_PARTIAL_CHECKPOINT",
        "train.allow_partial_checkpoint",
        False,
        "accept a checkpoint that leaves part of the model (--eval-only) or of its backbone (training) unloaded",
        "allow_partial_checkpoint",
        _bool,
        "true or false",
    ),
    Option(
        "MODEL.SPEED.FOLD_FROZEN_BN",
        "train.speed.fold_frozen_bn",
        True,
        "frozen BN folded into the convolutions (same outputs and gradients)",
        "fold_frozen_bn",
        _bool,
        "true or false",
    ),
    Option(
        "MODEL.SPEED.CHANNELS_LAST_INFERENCE",
        "train.speed.channels_last_inference",
        True,
        "channels-last convolutions at inference",
        "channels_last_inference",
        _bool,
        "true or false",
    ),
    Option(
        "SOLVER.REFERENCE_WORLD_SIZE",
        "train.reference_world_size",
        0,
        "> 0: batch, lr and schedule scale with the number of processes",
        "reference_world_size",
        _non_negative_int,
        "an integer >= 0",
    ),
    Option(
        "SOLVER.LOSS_EXPLOSION_FACTOR",
        "train.loss_explosion_factor",
        1e4,
        "stop when the total loss exceeds this x the median of the last 100 iterations' (0: off)",
        "loss_explosion_factor",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
        "a number >= 0 (0: off)",
    ),
    # Run settings of Detectron2 that the trainer reads (Detectron2 defines the keys and their defaults).
    *(
        Option(yacs, lazy, default, meaning, setting, check, expects, detectron2=True)
        for setting, yacs, lazy, default, check, expects, meaning in (
            (
                "output_dir",
                "OUTPUT_DIR",
                "train.output_dir",
                REQUIRED,
                lambda v: _text(v) and v != "",
                "a folder path",
                "where checkpoints, logs, metrics and evaluations go",
            ),
            (
                "max_iter",
                "SOLVER.MAX_ITER",
                "train.max_iter",
                REQUIRED,
                _positive_int,
                "a positive integer",
                "training iterations",
            ),
            (
                "weights",
                "MODEL.WEIGHTS",
                "train.init_checkpoint",
                "",
                lambda v: v is None or _text(v),
                "a file path or ''",
                "initial weights (training) or the weights evaluated (--eval-only)",
            ),
            (
                "amp",
                "SOLVER.AMP.ENABLED",
                "train.amp.enabled",
                False,
                _bool,
                "true or false",
                "automatic mixed precision",
            ),
            (
                "checkpoint_period",
                "SOLVER.CHECKPOINT_PERIOD",
                "train.checkpointer.period",
                REQUIRED,
                _positive_int,
                "a positive integer",
                "iterations between checkpoints",
            ),
            (
                "max_to_keep",
                None,
                "train.checkpointer.max_to_keep",
                None,
                lambda v: v is None or _positive_int(v),
                "a positive integer, or null for all",
                "periodic checkpoints kept (yacs: all)",
            ),
            (
                "eval_period",
                "TEST.EVAL_PERIOD",
                "train.eval_period",
                REQUIRED,
                _non_negative_int,
                "an integer >= 0",
                "iterations between evaluations (0: only at the end)",
            ),
            (
                "log_period",
                None,
                "train.log_period",
                20,
                _positive_int,
                "a positive integer",
                "iterations between metric writes (yacs: 20, as DefaultTrainer)",
            ),
            ("seed", "SEED", "train.seed", -1, _int, "an integer (< 0: a random seed)", "the run's random seed"),
            (
                "device",
                "MODEL.DEVICE",
                "train.device",
                REQUIRED,
                _text,
                "a device name such as 'cpu' or 'cuda'",
                "where the model runs",
            ),
            (
                "total_batch_size",
                "SOLVER.IMS_PER_BATCH",
                "dataloader.train.total_batch_size",
                REQUIRED,
                _positive_int,
                "a positive multiple of the number of processes",
                "images per iteration, all processes",
            ),
            (
                "num_workers",
                "DATALOADER.NUM_WORKERS",
                "dataloader.train.num_workers",
                0,
                _non_negative_int,
                "an integer >= 0",
                "training loader worker processes per process",
            ),
            (
                "cudnn_benchmark",
                "CUDNN_BENCHMARK",
                "train.cudnn_benchmark",
                False,
                _bool,
                "true or false",
                "cuDNN's algorithm search in training (Detectron2's default_setup)",
            ),
            (
                "tta",
                "TEST.AUG.ENABLED",
                "test.aug.enabled",
                False,
                _bool,
                "true or false",
                "also evaluate with test-time augmentation (flip and scales, Detectron2's GeneralizedRCNNWithTTA)",
            ),
            (
                "tta_min_sizes",
                "TEST.AUG.MIN_SIZES",
                "test.aug.min_sizes",
                (400, 500, 600, 700, 800, 900, 1000, 1100, 1200),
                lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_positive_int(s) for s in v),
                "a list of positive integers",
                "test-time augmentation: the shorter sides",
            ),
            (
                "tta_max_size",
                "TEST.AUG.MAX_SIZE",
                "test.aug.max_size",
                4000,
                _positive_int,
                "a positive integer",
                "test-time augmentation: the longest longer side",
            ),
            (
                "tta_flip",
                "TEST.AUG.FLIP",
                "test.aug.flip",
                True,
                _bool,
                "true or false",
                "test-time augmentation: also each size flipped",
            ),
            (
                "num_classes",
                "MODEL.ROI_HEADS.NUM_CLASSES",
                "model.roi_heads.num_classes",
                None,
                lambda v: v is None or _positive_int(v),
                "a positive integer (or null: from the datasets)",
                "foreground classes the model predicts",
            ),
            (
                "train_datasets",
                "DATASETS.TRAIN",
                "dataloader.train.dataset.names",
                (),
                _names,
                "a registered dataset name or a list of them",
                "training datasets",
            ),
            (
                "test_datasets",
                "DATASETS.TEST",
                "dataloader.test.dataset.names",
                (),
                _names,
                "a registered dataset name or a list of them",
                "test datasets (evaluated one by one)",
            ),
            (
                "base_lr",
                "SOLVER.BASE_LR",
                "optimizer.lr",
                REQUIRED,
                lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0,
                "a positive number",
                "learning rate",
            ),
        )
    ),
]
_BY_YACS = {o.yacs: o for o in OPTIONS if o.yacs}
_BY_SETTING = {o.setting: o for o in OPTIONS if o.setting}


def run_options() -> Dict[str, Option]:
    """The run settings' options by setting name (output_dir, max_iter, ..., per_stage_eval, ...)."""
    return dict(_BY_SETTING)


def setting_keys(setting: str) -> str:
    """Both spellings of run setting `setting` for a message: "train.x=... (LazyConfig) or X ... (yacs)"."""
    option = _BY_SETTING[setting]
    return f"{option.lazy} (LazyConfig) or {option.yacs or 'no key'} (yacs)"


def cascade_head_default(name: str) -> Any:
    """Default of the cascade-head option `name` (e.g. "STAGE_SAMPLING"); the heads' keyword defaults use it."""
    return option_default(f"{CASCADE_HEAD}.{name}")


def option(yacs_key: str) -> Option:
    """The option whose yacs key is `yacs_key`."""
    return _BY_YACS[yacs_key]


def option_default(yacs_key: str) -> Any:
    """Default of the option whose yacs key is `yacs_key`; the constructors' keyword defaults use it."""
    return _BY_YACS[yacs_key].default


def yacs_option(cfg: CN, key: str) -> Any:
    """`key` (e.g. "TEST.PER_STAGE_EVAL") of a yacs config, or its default when the config lacks it (a user's own
    Detectron2 config without add_cascade_config gets Detectron2's behaviour)."""
    return get_dotted(cfg, key, _BY_YACS[key].default)


def get_dotted(cfg: dict, key: str, default: Any) -> Any:
    """`cfg["A"]["B"]["C"]` for key "A.B.C" in nested dicts (a yacs CfgNode is one), or `default` where a part is
    missing."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def set_dotted(cfg: dict, key: str, value: Any) -> None:
    """Set key "A.B.C" of nested dicts that the caller owns (a yacs CfgNode not frozen), making missing parents of
    the same type as `cfg`."""
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        if part not in node:
            node[part] = type(cfg)()
        node = node[part]
    node[leaf] = value


def add_cascade_config(cfg: CN) -> CN:
    """Add every yacs key of `OPTIONS` with its default to a Detectron2 config (in place; returns it).

    Detectron2's own cascade keys keep their meaning: MODEL.ROI_BOX_CASCADE_HEAD.IOUS (one IoU threshold per stage;
    the number of stages) and .BBOX_REG_WEIGHTS (one box-coder weight tuple per stage)."""
    for option in OPTIONS:
        if option.detectron2 or option.yacs is None:
            continue
        set_dotted(cfg, option.yacs, list(option.default) if isinstance(option.default, list) else option.default)
    # Detectron2's cascade is class-agnostic; this is the default a cascade config starts from.
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    return cfg


def lazy_test_defaults() -> Dict[str, Any]:
    """The `test.*` settings (test-time augmentation, `test.aug`) with their defaults: what a LazyConfig's `test`
    node holds (Detectron2's LazyConfigs have none; `configs/common/train.py` writes it)."""
    out: Dict[str, Any] = {}
    for option in OPTIONS:
        if option.lazy and option.lazy.startswith("test."):
            default = list(option.default) if isinstance(option.default, tuple) else option.default
            set_dotted(out, option.lazy[len("test.") :], default)
    return out


def lazy_train_defaults() -> Dict[str, Any]:
    """The `train.*` run settings of `OPTIONS` with their defaults, nested as `train.update(**...)` takes them."""
    out: Dict[str, Any] = {}
    for option in OPTIONS:
        if option.detectron2 or option.lazy is None or not option.lazy.startswith("train."):
            continue
        set_dotted(out, option.lazy[len("train.") :], option.default)
    return out
