"""`python -m cascade_det.browse`: a config's datasets drawn with their ground truth, as loaded or after the
training augmentation, after the trainer's dataset checks."""

import os
import pathlib

import cv2
import pytest

from cascade_det.browse import main

from .conftest import QUICKSTART


def test_ground_truth_is_drawn_as_loaded_and_after_the_training_augmentation(tmp_path):
    loaded = main(["--config-file", QUICKSTART, "--output", str(tmp_path / "a"), "--limit", "3"])
    augmented = main(
        ["--config-file", QUICKSTART, "--output", str(tmp_path / "b"), "--limit", "2", "--train-augmentation"]
    )
    assert [os.path.basename(p) for p in loaded] == [f"cascade_shapes_train_{i}.png" for i in (1, 2, 3)]  # image ids
    assert len(augmented) == 2 and all(cv2.imread(p).shape == (128, 128, 3) for p in loaded + augmented)


def test_the_test_split_of_a_yacs_config_and_no_overwriting(tmp_path):
    yacs = QUICKSTART.replace(".py", ".yaml")
    (first,) = main(["--config-file", yacs, "--output", str(tmp_path), "--split", "test", "--limit", "1"])
    assert "cascade_shapes_val" in os.path.basename(first)
    before = pathlib.Path(first).read_bytes()
    with pytest.raises(FileExistsError, match="exists; not overwriting it"):
        main(["--config-file", yacs, "--output", str(tmp_path), "--split", "test", "--limit", "1"])
    assert pathlib.Path(first).read_bytes() == before


def test_a_dataset_that_is_not_registered_is_named(tmp_path):
    with pytest.raises(Exception, match="no_such_set"):
        main(["--config-file", QUICKSTART, "--output", str(tmp_path), "dataloader.train.dataset.names=no_such_set"])
