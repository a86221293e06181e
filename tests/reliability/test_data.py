"""Bad data stops a run before the model is built (or, for an unreadable image, when it is read), with a message
naming the dataset, the file and the fix; nothing of the output dir is touched."""

import json
import os
import re

import cv2
import numpy as np
import pytest

from cascade_det.data import DatasetError, SampleReadError
from cascade_det.engine import ConfigValueError

from detectron2.data.datasets import register_coco_instances

from .conftest import LAZY, TINY, TINY_TEST_SET, assert_untouched, log_of, run_main, snapshot

FASTER = "configs/Shapes/faster_rcnn_R_18_FPN.py"


def write_coco(folder, num_images=4, *, categories=(1, 2, 3, 4), annotate=True, jpeg=False):
    """A small COCO-json dataset of coloured squares: (json path, image folder)."""
    images_dir = os.path.join(folder, "images")
    os.makedirs(images_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(1, num_images + 1):
        image = np.full((96, 128, 3), 90, np.uint8)
        x, y = int(rng.integers(5, 60)), int(rng.integers(5, 40))
        image[y : y + 30, x : x + 40] = (200, 40, 40)
        name = f"{i:04d}." + ("jpg" if jpeg else "png")
        cv2.imwrite(os.path.join(images_dir, name), image)
        images.append({"id": i, "file_name": name, "height": 96, "width": 128})
        if annotate:
            annotations.append(
                {
                    "id": i,
                    "image_id": i,
                    "category_id": categories[i % len(categories)],
                    "bbox": [x, y, 40, 30],
                    "area": 1200,
                    "iscrowd": 0,
                }
            )
    cats = [{"id": c, "name": f"class{c}"} for c in categories]
    path = os.path.join(folder, "instances.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": cats}, f)
    return path, images_dir


_count = [0]


def register(json_file, image_root):
    _count[0] += 1
    name = f"reliability_data_{_count[0]}"
    register_coco_instances(name, {}, json_file, image_root)
    return name


def train_on(out, train_name, *extra, test_name=TINY_TEST_SET, config=LAZY):
    return run_main(
        "--config-file",
        config,
        f"train.output_dir={out}",
        "train.max_iter=2",
        *TINY,
        f"dataloader.train.dataset.names={train_name}",
        f"dataloader.test.dataset.names={test_name}",
        *extra,
    )


@pytest.fixture
def used_dir(run_copy):
    """A finished run's folder, which a failed resume of it must leave as it was."""
    return run_copy, snapshot(run_copy)


def test_an_empty_test_set_stops_the_run_before_training(tmp_path, used_dir):
    out, before = used_dir
    json_file, images = write_coco(str(tmp_path), num_images=0)
    name = register(json_file, images)
    error = run_main(
        "--resume",
        "--config-file",
        LAZY,
        f"train.output_dir={out}",
        "train.max_iter=6",
        *TINY,
        f"dataloader.test.dataset.names={name}",
    )
    assert isinstance(error, DatasetError)
    assert f"Dataset {name!r} ({json_file}) has no images: dataloader.test.dataset.names" in str(error)
    assert_untouched(out, before)
    assert snapshot(out).keys() == before.keys()


def test_a_training_set_without_annotations_is_refused(tmp_path):
    json_file, images = write_coco(str(tmp_path), annotate=False)
    name = register(json_file, images)
    error = train_on(tmp_path / "out", name)
    assert isinstance(error, DatasetError) and f"Dataset {name!r} ({json_file}) has no annotations" in str(error)
    assert not (tmp_path / "out").exists()


def test_missing_image_files_are_named_before_training(tmp_path):
    json_file, images = write_coco(str(tmp_path))
    os.remove(os.path.join(images, "0003.png"))
    name = register(json_file, images)
    error = train_on(tmp_path / "out", name)
    assert isinstance(error, FileNotFoundError)
    assert f"Dataset {name!r}: 1 of its 4 image files do not exist, e.g. {os.path.join(images, '0003.png')}" in str(
        error
    )
    assert not (tmp_path / "out").exists()


def test_invalid_json_names_the_dataset_and_the_file(tmp_path):
    json_file, images = write_coco(str(tmp_path))
    with open(json_file, "a") as f:
        f.write("{ not json")
    name = register(json_file, images)
    error = train_on(tmp_path / "out", name)
    assert isinstance(error, DatasetError)
    assert f"Dataset {name!r} cannot be loaded from {json_file}: JSONDecodeError" in str(error)


def test_an_annotation_of_an_unknown_category_names_the_id_and_the_dataset(tmp_path):
    json_file, images = write_coco(str(tmp_path))
    with open(json_file) as f:
        data = json.load(f)
    data["annotations"][1]["category_id"] = 99
    with open(json_file, "w") as f:
        json.dump(data, f)
    name = register(json_file, images)
    error = train_on(tmp_path / "out", name)
    assert isinstance(error, DatasetError) and f"Dataset {name!r} cannot be loaded from {json_file}" in str(error)
    assert "category_id=99" in str(error)


def test_num_classes_that_disagree_with_the_categories_are_refused_before_training(tmp_path):
    json_file, images = write_coco(str(tmp_path), categories=(3, 7))  # 2 categories, non-contiguous ids
    name = register(json_file, images)
    error = train_on(tmp_path / "out", name, test_name=name)
    assert isinstance(error, ConfigValueError)
    assert "model.roi_heads.num_classes=4, but the datasets have 2 categories (class3, class7)" in str(error)
    assert "set model.roi_heads.num_classes=2" in str(error)
    assert not (tmp_path / "out").exists()


def test_an_unregistered_dataset_names_the_closest_registered_one(tmp_path):
    error = train_on(tmp_path / "out", "cascade_shapes_trainn")
    assert isinstance(error, DatasetError)
    assert "dataloader.train.dataset.names: dataset 'cascade_shapes_trainn' is not registered" in str(error)
    assert "Did you mean 'cascade_shapes_train'" in str(error) and "--register-coco" in str(error)


def test_per_stage_evaluation_of_a_model_without_cascade_heads_is_refused_when_the_run_is_set_up(tmp_path):
    error = run_main(
        "--config-file", FASTER, f"train.output_dir={tmp_path / 'out'}", "train.per_stage_eval=True", *TINY
    )
    assert isinstance(error, ConfigValueError)
    assert "train.per_stage_eval=True needs cascade heads" in str(error) and "StandardROIHeads" in str(error)
    assert not (tmp_path / "out").exists()


def _truncated_jpeg_dataset(tmp_path):
    json_file, images = write_coco(str(tmp_path), num_images=6, jpeg=True)
    broken = os.path.join(images, "0002.jpg")
    with open(broken, "r+b") as f:
        f.truncate(os.path.getsize(broken) // 2)
    return register(json_file, images), broken


def test_an_unreadable_training_image_is_an_error_naming_the_file_before_anything_is_written(tmp_path):
    name, broken = _truncated_jpeg_dataset(tmp_path)
    error = train_on(tmp_path / "out", name, "train.max_iter=6", "dataloader.test.dataset.names=[]")
    assert isinstance(error, DatasetError)
    assert re.search(rf"Dataset '{name}': image {re.escape(broken)} cannot be read \(OSError", str(error))
    assert "dataloader.train.skip_unreadable_images=True" in str(error)
    assert not (tmp_path / "out").exists()


def test_an_image_that_breaks_after_the_check_is_an_error_naming_the_file_when_it_is_read(tmp_path, monkeypatch):
    from cascade_det.data import annotation_checks

    name, broken = _truncated_jpeg_dataset(tmp_path)
    monkeypatch.setattr(annotation_checks, "_sample", lambda dicts: [])  # a set too large to open every image
    error = train_on(tmp_path / "out", name, "train.max_iter=6", "dataloader.test.dataset.names=[]")
    assert isinstance(error, SampleReadError)
    assert re.search(rf"Cannot read image {re.escape(broken)} \(image_id 2\) of the training set: OSError", str(error))
    assert "dataloader.train.skip_unreadable_images=True" in str(error)


def test_unreadable_training_images_can_be_skipped_and_are_counted_in_the_log(tmp_path):
    name, broken = _truncated_jpeg_dataset(tmp_path)
    out = tmp_path / "out"
    assert (
        train_on(
            out,
            name,
            "train.max_iter=6",
            "dataloader.train.skip_unreadable_images=True",
            "model.roi_heads.num_classes=4",
            "dataloader.test.dataset.names=[]",
        )
        is None
    )
    log = log_of(str(out))
    assert "Skipping an unreadable training image (1 so far in this process)" in log and broken in log
    assert (out / "model_final.pth").is_file()
