"""Annotations are checked for what they mean before anything is written: what would train or evaluate something
other than what the files say is an error naming the dataset, the file and the first offenders, and what training
would silently drop or clip is counted in the run's log with examples."""

import json
import os

import pytest

from cascade_det.data import DatasetError, check_datasets

from .conftest import log_of, run_main
from .test_data import register, train_on, write_coco


def _edited(tmp_path, edit, **kwargs):
    """A registered COCO dataset (write_coco: 128x96 images, one 40x30 box each) after `edit(data)`."""
    json_file, images = write_coco(str(tmp_path), **kwargs)
    with open(json_file) as f:
        data = json.load(f)
    edit(data)
    with open(json_file, "w") as f:
        json.dump(data, f)
    return register(json_file, images), json_file


def _set(items, key, value):
    for item in items:
        item[key] = value(item) if callable(value) else value


CASES = {
    "duplicate image ids": (
        lambda d: d["images"][1].update(id=d["images"][0]["id"]),
        "has 1 duplicate image ids: 1 (0001.png and 0002.png). One image would get the other's annotations",
    ),
    "mixed image id types": (lambda d: d["images"][1].update(id="b"), "mixes int and str image ids"),
    "a null bbox": (lambda d: d["annotations"][0].update(bbox=None), "annotation id 1: bbox None"),
    "a string bbox": (lambda d: d["annotations"][2].update(bbox="1,2,3,4"), "annotation id 3: bbox '1,2,3,4'"),
    "a string category id": (lambda d: d["annotations"][1].update(category_id="2"), "annotation id 2: category_id '2'"),
    "every box outside its image": (
        lambda d: _set(d["annotations"], "bbox", [500, 500, 10, 10]),
        "none of its 4 boxes is usable for training",
    ),
    "XYXY boxes in the XYWH field": (
        lambda d: _set(d["annotations"], "bbox", [70, 50, 110, 80]),
        "the boxes look like XYXY written in an XYWH field",
    ),
    "only crowd regions": (lambda d: _set(d["annotations"], "iscrowd", 1), "every one of its 4 annotations is a crowd"),
    "a size that disagrees with the file": (
        lambda d: d["images"][2].update(width=200),
        "0003.png is 128x96 but its annotation says 200x96",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_annotations_that_mean_something_else_are_refused_before_anything_is_written(tmp_path, case):
    edit, message = CASES[case]
    name, json_file = _edited(tmp_path, edit)
    out = tmp_path / "out"
    error = train_on(out, name)
    assert isinstance(error, DatasetError), error
    assert message in str(error) and name in str(error)
    assert json_file in str(error) or "0003.png" in str(error)  # the file that says so
    assert not out.exists()


def test_boxes_training_would_drop_or_clip_are_counted_in_the_log_with_examples(tmp_path):
    def add_bad_boxes(data):
        extra = [[float("nan"), 5, 10, 10], [10, 10, -5, 8], [100, 70, 60, 50], [0, 0, 1000, 900]]
        for k, bbox in enumerate(extra):
            data["annotations"].append(
                {"id": 100 + k, "image_id": 1, "category_id": 1, "bbox": bbox, "area": 1, "iscrowd": 0}
            )

    name, json_file = _edited(tmp_path, add_bad_boxes)
    notes = []
    check_datasets([name], split="training", key="dataloader.train.dataset.names", notes=notes)
    text = "\n".join(notes)
    assert "1 of its 8 boxes are not finite (NaN or infinity): dropped" in text
    assert "1 of its 8 boxes have no area (width or height <= 0): dropped" in text
    assert "lie mostly outside their image: clipped" in text and "are more than 4 times their image's size" in text
    assert "0001.png: [10.0, 10.0, -5.0, 8.0]" in text  # the first offenders, by file
    out = tmp_path / "out"
    assert train_on(out, name, "train.max_iter=1", "dataloader.test.dataset.names=[]") is None
    log = log_of(str(out))
    assert all(note.split(", e.g.")[0] in log for note in notes)  # the same counts, in the run's log


def test_an_unreadable_test_image_is_refused_before_training_or_evaluated_blank_when_asked(
    tmp_path, quickstart_weights
):
    json_file, images = write_coco(str(tmp_path), num_images=4, jpeg=True)
    broken = os.path.join(images, "0003.jpg")
    with open(broken, "r+b") as f:
        f.truncate(os.path.getsize(broken) // 2)
    name = register(json_file, images)
    out = tmp_path / "out"
    base = ["--config-file", "configs/Shapes/cascade_rcnn_R_18_FPN.py", f"train.output_dir={out}"]
    base += ["dataloader.test.num_workers=0", f"dataloader.test.dataset.names={name}", "model.roi_heads.num_classes=4"]
    error = run_main(*base, "train.max_iter=1", "dataloader.train.total_batch_size=2")
    assert isinstance(error, DatasetError) and broken in str(error)
    assert "train.skip_unreadable_test_images=True" in str(error) and not out.exists()
    assert (
        run_main(
            "--eval-only",
            *base,
            f"train.init_checkpoint={quickstart_weights}",
            "train.skip_unreadable_test_images=True",
        )
        is None
    )
    (eval_dir,) = os.listdir(out / "inference")
    log = log_of(str(out / "inference" / eval_dir))
    assert "(will be skipped)" in log and "Evaluating an unreadable test image as blank (1 so far)" in log
    assert broken in log
