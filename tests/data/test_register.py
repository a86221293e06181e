"""Your own data from the command line: --register-coco / --register-voc register before the config is read, in
every launched process; non-contiguous category ids (COCO's 1..90 style) train and evaluate."""

import json
import os
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from cascade_det.data.checks import DatasetError
from cascade_det.data.register import register_coco, register_voc
from cascade_det.engine import ConfigValueError

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..conftest import TWO_ITERATIONS, run_train_net
from ..reliability.conftest import run_main
from ..reliability.test_data import write_coco

QUICK = [*TWO_ITERATIONS, "dataloader.test.num_workers=0"]


@pytest.fixture(scope="module")
def sparse_ids_dataset(tmp_path_factory):
    """A COCO-json dataset whose two categories have the ids 3 and 17."""
    return write_coco(str(tmp_path_factory.mktemp("sparse")), num_images=6, categories=(3, 17))


def test_register_coco_trains_and_evaluates_non_contiguous_category_ids_from_the_command_line(
    sparse_ids_dataset, tmp_path
):
    json_file, images = sparse_ids_dataset
    out = str(tmp_path / "run")
    proc = run_train_net(
        "--num-gpus",
        "2",
        "--register-coco",
        "sparse_train",
        json_file,
        images,
        "--register-coco",
        "sparse_val",
        json_file,
        images,
        *QUICK,
        "dataloader.train.dataset.names=sparse_train",
        "dataloader.test.dataset.names=sparse_val",
        "model.roi_heads.num_classes=null",
        f"train.output_dir={out}",
        num_threads=1,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "model.roi_heads.num_classes = 2, from the datasets' categories" in proc.stdout
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = [json.loads(line) for line in f if "bbox/AP" in line][-1]
    assert "bbox/AP-class3" in metrics and "bbox/AP-class17" in metrics  # Detectron2 mapped ids 3, 17 -> 0, 1
    with open(os.path.join(out, "inference", "iter_0000001", "coco_instances_results.json")) as f:
        assert {r["category_id"] for r in json.load(f)} <= {3, 17}  # results in the dataset's own ids


def test_a_num_classes_mismatch_with_registered_data_is_refused_before_training(sparse_ids_dataset, tmp_path):
    json_file, images = sparse_ids_dataset
    error = run_main(
        "--register-coco",
        "sparse_train_2",
        json_file,
        images,
        *QUICK,
        "dataloader.train.dataset.names=sparse_train_2",
        "dataloader.test.dataset.names=[]",
        f"train.output_dir={tmp_path / 'out'}",
    )
    assert isinstance(error, ConfigValueError)
    assert "model.roi_heads.num_classes=4, but the datasets have 2 categories (class3, class17)" in str(error)
    assert not (tmp_path / "out").exists()


def test_register_coco_names_a_missing_file_and_a_taken_name(tmp_path, sparse_ids_dataset):
    json_file, images = sparse_ids_dataset
    with pytest.raises(
        FileNotFoundError, match=r"--register-coco mine: the annotation file .*nope.json does not exist"
    ):
        register_coco("mine", str(tmp_path / "nope.json"), images)
    with pytest.raises(DatasetError, match="--register-coco coco_2017_val: a dataset of that name is already"):
        register_coco("coco_2017_val", json_file, images)
    register_coco("twice", json_file, images)
    register_coco("twice", json_file, images)  # the same registration again (a second run in one process): fine


def write_voc(folder, classes=("widget", "gadget")):
    for part in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(folder, part), exist_ok=True)
    ids = []
    for i, name in enumerate(classes * 2):
        image_id = f"img{i:03d}"
        ids.append(image_id)
        cv2.imwrite(os.path.join(folder, "JPEGImages", f"{image_id}.jpg"), np.full((60, 80, 3), 120, np.uint8))
        root = ET.Element("annotation")
        size = ET.SubElement(root, "size")
        for tag, value in (("width", 80), ("height", 60), ("depth", 3)):
            ET.SubElement(size, tag).text = str(value)
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for tag, value in (("xmin", 10), ("ymin", 10), ("xmax", 50), ("ymax", 40)):
            ET.SubElement(box, tag).text = str(value)
        ET.ElementTree(root).write(os.path.join(folder, "Annotations", f"{image_id}.xml"))
    with open(os.path.join(folder, "ImageSets", "Main", "train.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")


def test_register_voc_finds_the_folders_classes(tmp_path):
    write_voc(str(tmp_path))
    register_voc("my_voc_train", str(tmp_path), "train")
    assert MetadataCatalog.get("my_voc_train").thing_classes == ["gadget", "widget"]
    dicts = DatasetCatalog.get("my_voc_train")
    assert len(dicts) == 4 and {a["category_id"] for d in dicts for a in d["annotations"]} == {0, 1}
    with pytest.raises(FileNotFoundError, match=r"--register-voc bad: .*ImageSets/Main/val.txt does not exist"):
        register_voc("bad", str(tmp_path), "val")
