"""Your data, start to finish, with the defaults: a VOC folder (string image ids, a class in the val split only) and
a labelme-style COCO export (string ids, category id 0, polygon masks) train, evaluate per stage on both COCO
backends and resume through train_net.py's own flags; the checkpoints then know the class names."""

import json
import os

import pytest
import torch

from cascade_det.evaluation import BACKENDS

from ..data.user_data import VOC_CLASSES, write_labelme_coco, write_voc
from ..reliability.conftest import log_of, run_main

QUICKSTART = "configs/Shapes/cascade_rcnn_R_18_FPN.py"
SMALL = [
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "model.roi_heads.num_classes=null",  # from the registered data, as configs/Custom leaves it
]


@pytest.fixture(scope="module")
def voc_dir(tmp_path_factory):
    return write_voc(str(tmp_path_factory.mktemp("trees")))


def metrics_lines(out):
    with open(os.path.join(out, "metrics.json")) as f:
        return [json.loads(line) for line in f]  # strict JSON: no bare NaN


@pytest.mark.parametrize("backend", BACKENDS)
def test_voc_data_trains_evaluates_per_stage_and_resumes_with_string_image_ids(voc_dir, tmp_path, backend):
    out = str(tmp_path / "run")
    register = ["--register-voc", "voc_e2e_train", voc_dir, "train", "--register-voc", "voc_e2e_val", voc_dir, "val"]
    common = [
        *register,
        "--config-file",
        QUICKSTART,
        *SMALL,
        "dataloader.train.dataset.names=voc_e2e_train",
        "dataloader.test.dataset.names=voc_e2e_val",
        f"train.output_dir={out}",
        f"train.eval_backend={backend}",
        "train.eval_period=2",
        "train.checkpointer.period=2",
    ]
    assert run_main(*common, "train.max_iter=2") is None
    assert run_main("--resume", *common, "train.max_iter=4") is None
    assert "Resuming at iteration 2" in log_of(out)
    evaluations = [m for m in metrics_lines(out) if "bbox/AP" in m]
    assert [m["iteration"] for m in evaluations] == [2, 4]  # the evaluations after iterations 1 and 3
    # Every class of the folder, Rock (val only) included, in one list shared by the splits.
    assert all(f"bbox/AP-{name}" in evaluations[-1] for name in VOC_CLASSES)
    assert "per_stage_bbox/stage2/AP@0.75" in evaluations[-1] and "per_stage_bbox/ensemble/AP" in evaluations[-1]
    meta = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["cascade_det_model"]
    assert meta["thing_classes"] == sorted(VOC_CLASSES) and meta["num_classes"] == 3
    assert meta["input_format"] == "BGR" and meta["test_resize"] == {"short_edge_length": 128, "max_size": 128}


def test_voc_class_names_given_on_the_command_line_set_the_order(voc_dir, tmp_path):
    out = str(tmp_path / "run")
    error = run_main(
        "--register-voc",
        "trees_ordered",
        voc_dir,
        "train",
        "--classes",
        "Tree,Bush,Rock",
        "--config-file",
        QUICKSTART,
        *SMALL,
        "dataloader.train.dataset.names=trees_ordered",
        "dataloader.test.dataset.names=[]",
        f"train.output_dir={out}",
        "train.max_iter=1",
        "train.eval_period=0",
    )
    assert error is None, error
    meta = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["cascade_det_model"]
    assert meta["thing_classes"] == ["Tree", "Bush", "Rock"]


def test_labelme_coco_mask_data_with_string_ids_and_category_0_trains_and_evaluates_boxes_and_masks(tmp_path):
    json_file, images = write_labelme_coco(str(tmp_path / "labelme"))
    out = str(tmp_path / "run")
    error = run_main(
        "--register-coco",
        "labelme_photos",
        json_file,
        images,
        "--config-file",
        "configs/Custom/cascade_mask_rcnn_R_50_FPN.py",
        *SMALL,
        "model.backbone.bottom_up.stages.depth=18",  # the backbone depth is one override
        # 20 detections (3 mask heads run on each) of 100 proposals per test image: the plumbing, not the accuracy
        "model.proposal_generator.post_nms_topk=[200,100]",
        "+model.roi_heads.box_predictors.2.test_topk_per_image=20",  # a FastRCNNOutputLayers default: added
        "dataloader.train.mapper.augmentations=[]",
        "dataloader.test.mapper.augmentations=[]",
        "dataloader.train.dataset.names=labelme_photos",
        "dataloader.test.dataset.names=labelme_photos",
        "train.device=cpu",
        f"train.output_dir={out}",
        "train.max_iter=1",
        "train.eval_period=0",
        "train.reference_world_size=0",
    )
    assert error is None, error
    final = [m for m in metrics_lines(out) if "bbox/AP" in m][-1]
    assert "segm/AP" in final and "per_stage_bbox/ensemble/AP" in final
    assert {"bbox/AP-person", "bbox/AP-bicycle"} <= set(final)  # category ids 0 and 1
    with open(os.path.join(out, "inference", "iter_0000000", "coco_instances_results.json")) as f:
        results = json.load(f)
    assert results and {r["image_id"] for r in results} <= {f"photo_{i:03d}" for i in range(6)}
    meta = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["cascade_det_model"]
    assert meta["thing_classes"] == ["person", "bicycle"]
