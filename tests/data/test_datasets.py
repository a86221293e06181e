"""The embedded shapes dataset and the dataset-file checks."""

import hashlib
import json
import os

import pytest

import cascade_det  # noqa: F401
from cascade_det.data import SHAPE_CLASSES, DatasetError, check_datasets, ensure_embedded_split
from cascade_det.data.shapes import write_shapes_split

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances

from ..conftest import VAL_IMAGES


def digest(folder):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_generation_is_deterministic(tmp_path):
    write_shapes_split(str(tmp_path / "a"), "train", 6, seed=3)
    write_shapes_split(str(tmp_path / "b"), "train", 6, seed=3)
    write_shapes_split(str(tmp_path / "c"), "train", 6, seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_annotations_are_valid_coco_with_varied_classes_scales_and_masks(tmp_path):
    with open(write_shapes_split(str(tmp_path), "val", 40, seed=0)) as f:
        data = json.load(f)
    assert [c["name"] for c in data["categories"]] == list(SHAPE_CLASSES)
    anns = data["annotations"]
    assert {a["category_id"] for a in anns} == {1, 2, 3, 4}
    sides = [max(a["bbox"][2], a["bbox"][3]) for a in anns]
    assert min(sides) < 20 and max(sides) > 50  # varied scale
    aspects = [a["bbox"][2] / a["bbox"][3] for a in anns]
    assert min(aspects) < 0.7 and max(aspects) > 1.4  # varied aspect
    for a in anns:
        x, y, w, h = a["bbox"]
        assert x >= 0 and y >= 0 and x + w <= 128.01 and y + h <= 128.01
        assert len(a["segmentation"][0]) >= 6 and a["area"] > 0


def test_embedded_splits_load_through_detectron2_coco_json_path():
    dicts = DatasetCatalog.get("cascade_shapes_val")
    assert len(dicts) == VAL_IMAGES  # the test session's cut of the 200 (tests/conftest.py)
    assert os.path.isfile(ensure_embedded_split("cascade_shapes_val"))
    first = dicts[0]
    assert first["height"] == first["width"] == 128 and os.path.isfile(first["file_name"])
    assert all("segmentation" in a and a["category_id"] in range(4) for a in first["annotations"])
    meta = MetadataCatalog.get("cascade_shapes_val")
    assert meta.thing_classes == list(SHAPE_CLASSES) and meta.evaluator_type == "coco"


def check(names):
    return check_datasets(names, split="training", key="dataloader.train.dataset.names")


def test_missing_user_dataset_names_the_path_and_how_to_fix(tmp_path):
    missing = tmp_path / "nowhere" / "instances.json"
    register_coco_instances("test_missing_dataset", {}, str(missing), str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=f"json_file {missing} does not exist.*register_coco_instances"):
        check(["test_missing_dataset"])


def test_missing_builtin_coco_names_detectron2_datasets(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="DETECTRON2_DATASETS"):
        check(["coco_2017_val"])


def test_unregistered_dataset_names_the_key_the_closest_names_and_how_to_register():
    with pytest.raises(
        DatasetError,
        match=r"dataset 'cascade_shapes_trian' is not registered. Did you mean "
        r"'cascade_shapes_train'.*--register-coco",
    ):
        check(["cascade_shapes_trian"])


def test_embedded_dataset_passes_the_checks_and_names_its_categories():
    assert check(["cascade_shapes_train"]) == list(SHAPE_CLASSES)


def test_unwritable_dataset_folder_names_the_variable(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(OSError, match="CASCADE_DET_DATASETS"):
        ensure_embedded_split("cascade_shapes_train", root=str(blocked / "shapes_v2"))


def test_embedded_metadata_points_at_the_folder_the_loader_fills():
    json_file = MetadataCatalog.get("cascade_shapes_train").json_file
    assert json_file == ensure_embedded_split("cascade_shapes_train") and os.path.isfile(json_file)
    assert json_file.startswith(os.environ["CASCADE_DET_DATASETS"])
