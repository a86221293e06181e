"""Every config in configs/ loads and builds; the yacs and LazyConfig quickstart configs describe one model."""
import glob
import os

import pytest
import torch

import cascade_det
from cascade_det.engine import load_config
import detectron2.data.transforms as T
from detectron2.config import LazyCall as L
from detectron2.config import instantiate
from detectron2.modeling import build_model

from .conftest import ROOT

LAZY_CONFIGS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True)
    if "/common/" not in p
)


def on_embedded_dataset(cfg):
    """The config with the embedded dataset substituted for its own and images of at most 128 px, batch 1."""
    cfg.dataloader.train.dataset.names = "cascade_shapes_train"
    cfg.dataloader.test.dataset.names = "cascade_shapes_val"
    cfg.dataloader.train.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=96, max_size=128)]
    cfg.dataloader.train.update(total_batch_size=1, num_workers=0)
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


def test_yacs_and_lazy_quickstart_configs_build_the_same_parameters():
    lazy = instantiate(load_config(os.path.join(ROOT, "configs/Shapes/cascade_rcnn_R_18_FPN.py")).model)
    yacs = build_model(load_config(os.path.join(ROOT, "configs/Shapes/cascade_rcnn_R_18_FPN.yaml")))
    lazy_shapes = {k: tuple(v.shape) for k, v in lazy.state_dict().items()}
    yacs_shapes = {k: tuple(v.shape) for k, v in yacs.state_dict().items()}
    assert lazy_shapes == yacs_shapes
    assert type(lazy.roi_heads) is type(yacs.roi_heads) is cascade_det.CascadeRCNNROIHeads


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
    assert [tuple(p.box2box_transform.weights) for p in heads.box_predictors] == [
        (10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)]
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
