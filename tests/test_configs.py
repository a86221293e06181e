"""Every config in configs/ loads and builds; the yacs and LazyConfig quickstart configs describe one model."""

import copy
import glob
import os
import shutil

import pytest
import torch

import cascade_det
from cascade_det.engine import load_config
from cascade_det.modeling.backbones import vitdet_available

import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.config import instantiate

from .conftest import ROOT

LAZY_CONFIGS = [
    # The ViTDet recipes need Detectron2 main (its ViT): on 0.6 they are skipped, saying so, and run in the main phase.
    pytest.param(
        path,
        marks=pytest.mark.skipif(
            "_vitdet_" in path and not vitdet_available(), reason="ViTDet needs Detectron2 main: its phase tests it"
        ),
    )
    for path in sorted(
        os.path.relpath(p, ROOT)
        for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True)
        if "/common/" not in p
    )
]


def on_embedded_dataset(cfg):
    """The config with the embedded dataset substituted for its own, images of at most 128 px (ViTDet: padded to a
    128 square, not 1024), batch 1 and 64 RoIs per image (the 4conv1fc heads of the Swin / ConvNeXt recipes cost
    30 GFLOP per stage at 512)."""
    cfg.dataloader.train.dataset.names = "cascade_shapes_train"
    cfg.dataloader.test.dataset.names = "cascade_shapes_val"
    cfg.dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=96, max_size=128)]
    cfg.dataloader.train.update(total_batch_size=1, num_workers=0)
    cfg.model.roi_heads.batch_size_per_image = 64
    if "square_pad" in cfg.model.backbone:
        cfg.model.backbone.square_pad = 128
    if cfg.model.roi_heads.num_classes is None:  # configs/Custom: set from the datasets when the run is set up
        cfg.model.roi_heads.num_classes = 4
    return cfg


@pytest.mark.parametrize("path", LAZY_CONFIGS)
def test_lazy_config_builds_and_runs_one_training_step_and_one_inference(path):
    cfg = on_embedded_dataset(load_config(os.path.join(ROOT, path), ["train.device=cpu"]))
    assert cfg.train.max_iter > 0 and cfg.optimizer.lr > 0
    model = instantiate(cfg.model).to("cpu")
    batch = next(iter(instantiate(cfg.dataloader.train)))
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        outputs = model([{"image": batch[0]["image"]}])
    assert "instances" in outputs[0]


def describe(obj, depth=0):
    """Every hyperparameter an object holds, as plain values: a module's own attributes (numbers, strings, tuples,
    helper objects such as matchers and box coders, one level down), its buffers' values and its parameters'
    shapes, recursively over submodules. Two objects built from configs that agree describe the same."""
    from omegaconf import OmegaConf

    plain = (bool, int, float, str, type(None))
    if OmegaConf.is_config(obj):
        obj = OmegaConf.to_container(obj)
    if isinstance(obj, plain):
        return obj
    if isinstance(obj, (list, tuple)):
        return tuple(describe(v, depth) for v in obj)
    if isinstance(obj, dict):
        return {str(k): describe(v, depth) for k, v in sorted(obj.items(), key=str) if not str(k).startswith("_")}
    if isinstance(obj, torch.Tensor):
        return tuple(obj.flatten().tolist()) if obj.numel() < 10000 else tuple(obj.shape)
    if isinstance(obj, torch.nn.Module):
        out = {"type": type(obj).__name__}
        out.update(
            {k: describe(v, depth) for k, v in sorted(vars(obj).items()) if not k.startswith("_") and k != "training"}
        )
        out.update({f"buffer:{k}": describe(v) for k, v in obj.named_buffers(recurse=False)})
        out.update({f"param:{k}": tuple(v.shape) for k, v in obj.named_parameters(recurse=False)})
        out.update({f"module:{k}": describe(m) for k, m in obj.named_children()})
        return out
    if callable(obj) and not hasattr(obj, "__dict__"):
        return getattr(obj, "__name__", repr(obj))
    if hasattr(obj, "__dict__") and depth < 2:
        return {
            "type": type(obj).__name__,
            **{
                k: describe(v, depth + 1)
                for k, v in sorted(vars(obj).items())
                if not k.startswith("_") or k in ("_seed",)
            },
        }
    return getattr(obj, "__name__", type(obj).__name__)


def flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def build_run(path, *overrides):
    from cascade_det.engine import Run

    return Run.of(load_config(os.path.join(ROOT, path), list(overrides))).on_available_device()


def run_description(run):
    """What a run is made of: the model, the training loader (mapper, batch, workers, sampler), the test mappers,
    the lr multiplier at every iteration, the run settings, and the optimizer's hyperparameters."""
    torch.manual_seed(0)
    model = run.build_model()
    loader = run.build_train_loader()
    test_loader = run.build_test_loader(run.settings.test_datasets[0])
    optimizer = run.build_optimizer(model)
    scheduler = run.build_lr_scheduler(optimizer)
    multipliers = [scheduler._multiplier(i / run.settings.max_iter) for i in range(run.settings.max_iter)]
    settings = {
        k: getattr(run.settings, k)
        for k in (
            "max_iter",
            "checkpoint_period",
            "eval_period",
            "seed",
            "amp",
            "per_stage_eval",
            "fold_frozen_bn",
            "channels_last_inference",
            "train_datasets",
            "test_datasets",
        )
    }
    groups = sorted(
        {tuple((k, describe(v)) for k, v in sorted(g.items()) if k != "params") for g in optimizer.param_groups}
    )
    return {
        "model": flatten(describe(model)),
        "train_loader": flatten(describe(loader)),
        "test_mapper": flatten(describe(test_loader.dataset._map_func._obj.mapper)),
        "lr_multiplier": multipliers,
        "settings": settings,
        "optimizer": (type(optimizer).__name__, groups),
    }


def assert_same(a, b, what):
    keys = sorted(set(a) | set(b))
    differ = [
        (k, a.get(k, "<absent>"), b.get(k, "<absent>")) for k in keys if a.get(k, "<absent>") != b.get(k, "<absent>")
    ]
    assert not differ, f"{what} differs: " + "; ".join(f"{k}: {x} != {y}" for k, x, y in differ[:10])


@pytest.fixture(scope="module")
def quickstart_twins():
    return {
        path: run_description(build_run(path))
        for path in (
            "configs/Shapes/cascade_rcnn_R_18_FPN.py",
            "configs/Shapes/cascade_rcnn_R_18_FPN.yaml",
            "configs/Shapes/faster_rcnn_R_18_FPN.py",
        )
    }


def test_yacs_and_lazy_quickstart_configs_build_the_same_run(quickstart_twins):
    """Every hyperparameter of the built model (sampling, RPN, anchors, pooler, thresholds, normalisation...), the
    loaders (augmentation and test resize, batch, workers), the lr schedule and the run settings agree; only the
    optimizer differs (Detectron2 0.6's yacs solver builds SGD; the LazyConfig uses AdamW, see the yaml)."""
    lazy = quickstart_twins["configs/Shapes/cascade_rcnn_R_18_FPN.py"]
    yacs = quickstart_twins["configs/Shapes/cascade_rcnn_R_18_FPN.yaml"]
    assert len(lazy["model"]) > 500  # a real comparison: every module's hyperparameters
    for part in ("model", "train_loader", "test_mapper", "settings"):
        assert_same(lazy[part], yacs[part], part)
    assert lazy["lr_multiplier"] == pytest.approx(yacs["lr_multiplier"], rel=1e-9)
    assert lazy["optimizer"][0] == "AdamW" and yacs["optimizer"][0] == "SGD"


def test_faster_rcnn_twin_differs_from_the_quickstart_in_its_roi_heads_only(quickstart_twins):
    cascade = quickstart_twins["configs/Shapes/cascade_rcnn_R_18_FPN.py"]
    faster = quickstart_twins["configs/Shapes/faster_rcnn_R_18_FPN.py"]
    outside = {k: v for k, v in cascade["model"].items() if not k.startswith("module:roi_heads")}
    assert_same(outside, {k: v for k, v in faster["model"].items() if not k.startswith("module:roi_heads")}, "model")
    for part in ("train_loader", "test_mapper", "optimizer"):
        assert cascade[part] == faster[part], part
    assert cascade["lr_multiplier"] == faster["lr_multiplier"]
    assert {**cascade["settings"], "per_stage_eval": False} == faster["settings"]
    heads = {k: v for k, v in faster["model"].items() if k.startswith("module:roi_heads")}
    assert heads["module:roi_heads.type"] == "StandardROIHeads"
    assert heads["module:roi_heads.batch_size_per_image"] == cascade["model"]["module:roi_heads.batch_size_per_image"]


def test_users_own_yacs_pipeline_switches_to_our_heads_by_name(tmp_path):
    """A plain Detectron2 config (no add_cascade_config) and DefaultPredictor: naming the heads is enough."""
    from detectron2.config import get_cfg
    from detectron2.engine import DefaultPredictor

    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(ROOT, "tests", "data", "users_cascade_config.yaml"))
    cfg.MODEL.ROI_HEADS.NAME = "CascadeRCNNROIHeads"
    cfg.MODEL.DEVICE = "cpu"
    predictor = DefaultPredictor(cfg)
    assert isinstance(predictor.model.roi_heads, cascade_det.CascadeRCNNROIHeads)
    image = (torch.rand(96, 128, 3) * 255).to(torch.uint8).numpy()
    instances = predictor(image)["instances"]
    assert instances.image_size == (96, 128) and instances.has("pred_boxes")


def test_coco_1x_config_is_mmdetection_recipe():
    cfg = load_config(os.path.join(ROOT, "configs/COCO/cascade_rcnn_R_50_FPN_1x.py"))
    heads = cfg.model.roi_heads
    assert heads.stage_sampling == "resample" and list(heads.stage_loss_weights) == [1.0, 0.5, 0.25]
    assert heads.test_score_ensemble == "mean_logits" and heads.batch_size_per_image == 512
    assert [p.smooth_l1_beta for p in heads.box_predictors] == [1.0] * 3
    stds = [(0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067)]  # MMDetection's
    assert [tuple(p.box2box_transform.weights) for p in heads.box_predictors] == [
        tuple(1 / s for s in stage) for stage in stds
    ]
    assert cfg.model.input_format == "RGB" == cfg.dataloader.train.mapper.image_format
    assert list(cfg.model.pixel_std) == [58.395, 57.12, 57.375]
    assert cfg.model.backbone.bottom_up.stages.stride_in_1x1 is False and cfg.model.backbone.bottom_up.freeze_at == 2
    assert tuple(cfg.model.proposal_generator.post_nms_topk) == (2000, 1000)
    assert cfg.dataloader.train.total_batch_size == 16 and cfg.optimizer.lr == 0.02
    assert cfg.train.max_iter == 12 * 7330  # 12 epochs of 117,266 images at batch 16
    assert list(cfg.lr_multiplier.scheduler.milestones) == [8 * 7330, 11 * 7330, 12 * 7330]
    multi_scale = load_config(os.path.join(ROOT, "configs/COCO/cascade_mask_rcnn_R_50_FPN_3x.py"))
    assert len(multi_scale.dataloader.train.mapper.augmentations[0].short_edge_length) == 6
    assert len(multi_scale.model.roi_heads.mask_head) == 3 and multi_scale.train.max_iter == 36 * 7330
    heads = instantiate(multi_scale.model.roi_heads)
    assert heads.mask_per_stage and heads.mask_head[0].predictor.out_channels == 80


BACKBONE_RECIPES = {  # config -> (backbone class, some of its published size's arguments)
    "configs/COCO/cascade_mask_rcnn_swin_T_FPN_3x.py": ("SwinTransformer", {"embed_dim": 96, "depths": [2, 2, 6, 2]}),
    "configs/COCO/cascade_mask_rcnn_swin_S_FPN_3x.py": ("SwinTransformer", {"depths": [2, 2, 18, 2]}),
    "configs/COCO/cascade_mask_rcnn_swin_B_FPN_3x.py": ("SwinTransformer", {"embed_dim": 128, "drop_path_rate": 0.3}),
    "configs/COCO/cascade_mask_rcnn_convnext_T_FPN_3x.py": (
        "ConvNeXt",
        {"depths": [3, 3, 9, 3], "drop_path_rate": 0.4},
    ),
    "configs/COCO/cascade_mask_rcnn_convnext_S_FPN_3x.py": (
        "ConvNeXt",
        {"depths": [3, 3, 27, 3], "drop_path_rate": 0.6},
    ),
    "configs/COCO/cascade_mask_rcnn_convnext_B_FPN_3x.py": ("ConvNeXt", {"dims": [128, 256, 512, 1024]}),
}


@pytest.mark.parametrize("path", sorted(BACKBONE_RECIPES))
def test_backbone_recipes_are_the_published_ones(path):
    """The Swin-Transformer-Object-Detection / ConvNeXt recipes: their backbone sizes, 4conv1fc SyncBN heads with
    class-specific GIoU regression (x10), per-stage mask heads, multi-scale crops, 36 epochs (27, 33), AMP, AdamW
    with the weight decay (and for ConvNeXt the layer-wise lr) of their optimizer constructors."""
    cfg = load_config(os.path.join(ROOT, path))
    cls, arguments = BACKBONE_RECIPES[path]
    bottom_up = cfg.model.backbone.bottom_up
    assert bottom_up._target_.__name__ == cls and all(bottom_up[k] == v for k, v in arguments.items())
    heads = cfg.model.roi_heads
    assert [list(h.conv_dims) for h in heads.box_heads] == [[256] * 4] * 3 and heads.box_heads[0].conv_norm == "SyncBN"
    assert [list(h.fc_dims) for h in heads.box_heads] == [[1024]] * 3
    for predictor in heads.box_predictors:
        assert predictor.cls_agnostic_bbox_reg is False and predictor.box_reg_loss_type == "giou"
        assert predictor.loss_weight == {"loss_box_reg": 10.0}
    assert len(heads.mask_head) == 3 and heads.stage_sampling == "resample"
    assert cfg.dataloader.train.mapper.augmentations[1]._target_.__name__ == "RandomChoice"
    assert cfg.train.max_iter == 36 * 7330 and list(cfg.lr_multiplier.scheduler.milestones)[:2] == [
        27 * 7330,
        33 * 7330,
    ]
    assert cfg.train.amp.enabled and cfg.optimizer._target_ is torch.optim.AdamW
    assert cfg.optimizer.weight_decay == 0.05 and cfg.optimizer.betas == (0.9, 0.999)
    model = instantiate(cfg.model)
    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    settings = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        group, no_decay = settings[id(p)], name.endswith("relative_position_bias_table") or ".norm" in name
        if cls == "SwinTransformer":
            assert cfg.optimizer.lr == 1e-4 and group["lr"] == 1e-4
            if "bottom_up" in name and no_decay:  # the backbone's LayerNorms and relative-position tables
                assert group["weight_decay"] == 0.0, name
            elif p.ndim > 1 and "bottom_up" in name:
                assert group["weight_decay"] == 0.05, name
        else:
            assert cfg.optimizer.lr == 2e-4 and group["weight_decay"] == (0.0 if p.ndim == 1 else 0.05), name
            assert group["lr"] <= 2e-4 and (group["lr"] < 2e-4) == (
                "bottom_up.norm" not in name and "bottom_up" in name
            )


VITDET_RECIPES = {  # ours -> projects/ViTDet's (in the snapshot .ci/env.sh extracts beside Detectron2 main)
    "configs/COCO/cascade_mask_rcnn_vitdet_B_100ep.py": "cascade_mask_rcnn_vitdet_b_100ep.py",
    "configs/COCO/cascade_mask_rcnn_vitdet_L_100ep.py": "cascade_mask_rcnn_vitdet_l_100ep.py",
}


def plain(node):
    """A LazyConfig node as plain containers (targets as they are), for comparing two configs' values."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


@pytest.mark.skipif(not vitdet_available(), reason="ViTDet needs Detectron2 main: its phase tests it")
@pytest.mark.parametrize("path", sorted(VITDET_RECIPES))
def test_vitdet_recipes_are_detectron2s_own(path):
    """Our ViTDet recipes hold projects/ViTDet's settings: the same ViT and simple feature pyramid, 2-conv RPN,
    4conv1fc LN box heads and LN mask head, stage IoUs and box coders, class-agnostic regression, LSJ data at 64
    images per batch, schedule, AMP, and AdamW groups equal parameter by parameter (lr with the layer decay, weight
    decay off for torch norms and the position embedding)."""
    import sys

    from detectron2.config import LazyConfig

    theirs = LazyConfig.load(
        os.path.join(sys.prefix, "detectron2-main-src", "projects/ViTDet/configs/COCO", VITDET_RECIPES[path])
    )
    ours = load_config(os.path.join(ROOT, path))
    for cfg in (
        theirs,
        ours,
    ):  # norm_layer: their functools.partial, our layer_norm node (same LayerNorm, checked below)
        cfg.model.backbone.net.pop("norm_layer")
    # Our ViT node is build_vit: their ViT with nothing frozen.
    our_backbone, their_backbone = copy.deepcopy(ours.model.backbone), copy.deepcopy(theirs.model.backbone)
    assert our_backbone.net.pop("_target_") is cascade_det.modeling.backbones.build_vit
    assert our_backbone.net.pop("frozen_blocks") == -1
    assert their_backbone.net.pop("_target_") is cascade_det.modeling.backbones.vit.ViT
    assert plain(our_backbone) == plain(their_backbone)
    for key in ("pixel_mean", "pixel_std", "input_format"):
        assert plain(ours.model[key]) == plain(theirs.model[key]), key
    rpn, their_rpn = ours.model.proposal_generator, theirs.model.proposal_generator
    assert list(rpn.head.conv_dims) == [-1, -1] and rpn.post_nms_topk == their_rpn.post_nms_topk
    assert rpn.pre_nms_topk == their_rpn.pre_nms_topk
    heads, their_heads = ours.model.roi_heads, theirs.model.roi_heads
    for part in ("box_heads", "proposal_matchers"):
        assert plain(heads[part]) == plain(their_heads[part]), part
    for predictor, their_predictor in zip(heads.box_predictors, their_heads.box_predictors):
        for key in ("cls_agnostic_bbox_reg", "test_score_thresh", "box2box_transform"):
            assert plain(predictor[key]) == plain(their_predictor[key]), key
    assert heads.mask_head.conv_norm == their_heads.mask_head.conv_norm == "LN" and heads.mask_train_stage == 0
    for loader in ("train", "test"):
        assert plain(ours.dataloader[loader].mapper.augmentations) == plain(
            theirs.dataloader[loader].mapper.augmentations
        )
    assert ours.dataloader.train.total_batch_size == theirs.dataloader.train.total_batch_size == 64
    assert ours.dataloader.train.mapper.recompute_boxes and ours.dataloader.train.mapper.image_format == "RGB"
    assert ours.train.max_iter == theirs.train.max_iter and ours.train.amp.enabled and ours.train.ddp.fp16_compression
    schedule, their_schedule = plain(ours.lr_multiplier), plain(theirs.lr_multiplier)
    for key in ("warmup_length", "warmup_factor"):
        assert schedule[key] == their_schedule[key], key
    for key in ("values", "milestones", "num_updates"):
        assert schedule["scheduler"][key] == their_schedule["scheduler"][key], key
    multiplier = instantiate(load_config(os.path.join(ROOT, path), ["train.max_iter=1000"]).lr_multiplier)
    assert [multiplier(f) for f in (0.5, 0.95, 0.99)] == pytest.approx([1.0, 0.1, 0.01])  # fractions of any run

    # The optimizer groups, on the recipe's own ViT (its depth sets the decay) with narrow heads.
    settings = []
    for cfg in (ours, theirs):
        cfg.model.backbone.net.norm_layer = L(cascade_det.modeling.backbones.layer_norm)()
        cfg.model.backbone.net.update(embed_dim=32, num_heads=2)
        model = instantiate(cfg.model)
        cfg.optimizer.params.model = model
        optimizer = instantiate(cfg.optimizer)
        groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        settings.append({n: (groups[id(p)]["lr"], groups[id(p)]["weight_decay"]) for n, p in model.named_parameters()})
    assert settings[0] == settings[1]
    depth = ours.model.backbone.net.depth
    decay = 0.7 if depth == 12 else 0.8
    assert settings[0]["backbone.net.pos_embed"] == (pytest.approx(1e-4 * decay ** (depth + 1)), 0.0)
    assert settings[0][f"backbone.net.blocks.{depth - 1}.attn.qkv.weight"] == (pytest.approx(1e-4 * decay), 0.1)
    assert settings[0]["backbone.net.blocks.0.norm1.weight"] == (pytest.approx(1e-4 * decay**depth), 0.0)
    assert model.backbone.net.blocks[0].norm1.eps == 1e-6


@pytest.mark.parametrize("path", LAZY_CONFIGS)
def test_every_config_saves_with_detectron2s_lazyconfig_save_and_reloads_to_the_same_model(path, tmp_path):
    from detectron2.config import LazyConfig

    cfg = load_config(os.path.join(ROOT, path), ["train.device=cpu"])
    assert set(cfg) <= {"dataloader", "lr_multiplier", "model", "optimizer", "test", "train"}, sorted(cfg)
    target = str(tmp_path / "config.yaml")
    LazyConfig.save(cfg, target)
    assert not os.path.exists(target + ".pkl")  # the yaml was complete: no pickled fallback
    with open(target) as f:
        saved = f.read()
    again = str(tmp_path / "again.yaml")
    LazyConfig.save(LazyConfig.load(target), again)
    with open(again) as f:
        assert f.read() == saved  # the saved config is the config: reloading and saving changes nothing
    if "/Shapes/" in path:  # and builds the same model (the small one; the others build in the test above)
        reloaded = on_embedded_dataset(LazyConfig.load(target))
        assert describe(instantiate(reloaded.model)) == describe(instantiate(on_embedded_dataset(cfg).model))


def test_a_config_derived_from_a_shipped_one_with_module_level_helpers_trains_through_train_net(tmp_path):
    """A user's config that leaves a node with a relative interpolation (or a loop variable) at module level, as
    `head = model.roi_heads.mask_head[0]` does: Detectron2's LazyConfig.save used to fail on it, and with it
    train_net.py."""
    from .conftest import TWO_ITERATIONS, run_train_net

    configs = tmp_path / "configs"
    shutil.copytree(os.path.join(ROOT, "configs"), configs)
    (configs / "Mine").mkdir()
    (configs / "Mine" / "mask_quickstart.py").write_text(
        "from detectron2.layers import ShapeSpec\n"
        "from ..common.models.mask_head import add_mask_heads\n"
        "from ..Shapes.cascade_rcnn_R_18_FPN import dataloader, lr_multiplier, model, optimizer, test, train\n"
        "add_mask_heads(model, dataloader)\n"
        "for head in model.roi_heads.mask_head:\n"
        "    head.input_shape = ShapeSpec(channels=64, height=14, width=14)\n"
        "    head.conv_dims = [16, 16]\n"
        "first_head = model.roi_heads.mask_head[0]  # num_classes: ${...num_classes}, relative to its list\n"
    )
    args = [a if a != TWO_ITERATIONS[1] else str(configs / "Mine" / "mask_quickstart.py") for a in TWO_ITERATIONS]
    proc = run_train_net(*args, f"train.output_dir={tmp_path / 'run'}", "train.final_eval=False")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Unable to serialize" not in proc.stdout
    assert os.path.isfile(tmp_path / "run" / "config.yaml") and not os.path.exists(tmp_path / "run" / "config.yaml.pkl")


@pytest.mark.parametrize("depth", [18, 34, 101])
def test_the_backbone_depth_is_one_override(depth):
    cfg = load_config(
        os.path.join(ROOT, "configs/Custom/cascade_rcnn_R_50_FPN.py"),
        [f"model.backbone.bottom_up.stages.depth={depth}", "model.roi_heads.num_classes=3", "train.device=cpu"],
    )
    bottom_up = instantiate(cfg.model.backbone).bottom_up
    blocks = {18: 8, 34: 16, 101: 33}[depth]
    assert sum(len(stage) for stage in bottom_up.stages) == blocks
    assert bottom_up.output_shape()["res5"].channels == (512 if depth < 50 else 2048)
