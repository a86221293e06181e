"""Every config in configs/ loads and builds; the yacs and LazyConfig quickstart configs describe one model."""
import glob
import os

import pytest
import torch

import cascade_det
from cascade_det.engine import load_config
from detectron2.config import instantiate
from detectron2.modeling import build_model

from .conftest import ROOT

LAZY_CONFIGS = sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True)
    if "/common/" not in p
)


@pytest.mark.parametrize("path", LAZY_CONFIGS)
def test_lazy_config_builds_and_runs_one_training_step_and_one_inference(path):
    cfg = load_config(os.path.join(ROOT, path), ["train.device=cpu", "dataloader.train.total_batch_size=2",
                                                 "dataloader.train.num_workers=0"])
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
