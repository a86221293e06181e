"""A model knows itself: the checkpoints training writes carry the class names, number of classes, input format
and test resize; Predictor, demo, analyze, convert and export use and pass them on when the config's datasets are
not registered (or name other classes)."""

import json
import os

import pytest
import torch

from cascade_det import Predictor
from cascade_det.engine import ConfigValueError
from cascade_det.export import export, exported_metadata, image_tensor

from ..conftest import QUICKSTART, run_python

UNREGISTERED = [  # a config that names no dataset and leaves the class count to the data, as configs/Custom does
    "model.roi_heads.num_classes=null",
    "dataloader.train.dataset.names=[]",
    "dataloader.test.dataset.names=[]",
]
TREES = ["Bush", "Rock", "Tree"]


def test_predictor_takes_the_class_count_and_names_from_the_checkpoint(trees_model, caplog):
    out, _ = trees_model
    predictor = Predictor(QUICKSTART, os.path.join(out, "model_final.pth"), device="cpu", overrides=UNREGISTERED)
    assert predictor.run.settings.num_classes == 3 and predictor.class_names == TREES
    assert predictor.metadata.thing_classes == TREES
    assert predictor.model_metadata() == {
        "num_classes": 3,
        "thing_classes": TREES,
        "input_format": "BGR",
        "test_resize": {"short_edge_length": 128, "max_size": 128},
    }


def test_the_checkpoints_names_win_over_a_config_dataset_of_other_classes_and_say_so(trees_model, caplog):
    out, _ = trees_model
    overrides = ["model.roi_heads.num_classes=3"]  # the quickstart's datasets: the 4 shape classes
    with caplog.at_level("WARNING", logger="cascade_det"):
        predictor = Predictor(QUICKSTART, os.path.join(out, "model_final.pth"), device="cpu", overrides=overrides)
    assert predictor.class_names == TREES
    assert "Class names from" in caplog.text and "not from the config's dataset cascade_shapes_val" in caplog.text


def test_without_a_model_description_or_data_the_class_count_is_asked_for(quickstart_weights):
    with pytest.raises(ConfigValueError, match=r"model.roi_heads.num_classes is not set.*set model.roi_heads"):
        Predictor(QUICKSTART, quickstart_weights, device="cpu", overrides=UNREGISTERED)


def test_safetensors_conversion_keeps_the_description(trees_model, tmp_path):
    from cascade_det.convert import main as convert

    out, _ = trees_model
    target = str(tmp_path / "trees.safetensors")
    convert(["to-safetensors", os.path.join(out, "model_final.pth"), target])
    predictor = Predictor(QUICKSTART, target, device="cpu", overrides=UNREGISTERED)
    assert predictor.class_names == TREES


def test_demo_and_analyze_run_on_a_config_whose_datasets_are_not_registered(trees_model, tmp_path, shapes_image):
    from cascade_det import analyze, demo

    out, voc = trees_model
    weights = os.path.join(out, "model_final.pth")
    flags = ["--config-file", QUICKSTART, "--weights", weights]
    proc = run_python(
        "-m", "cascade_det.demo", *flags, "--input", shapes_image, "--output", str(tmp_path / "vis"), *UNREGISTERED
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "Class names from" in proc.stdout and os.listdir(tmp_path / "vis")  # said on the console
    assert analyze.main([*flags, "--json", *UNREGISTERED])["total"]["parameters"] > 0
    # The datasets registered on the command line name the classes too (no --weights).
    report = analyze.main(
        [
            "--config-file",
            QUICKSTART,
            "--register-voc",
            "trees_val_analyze",
            voc,
            "val",
            "model.roi_heads.num_classes=null",
            "dataloader.test.dataset.names=trees_val_analyze",
        ]
    )
    assert report["total"]["parameters"] > 0
    assert demo.main(
        [
            "--config-file",
            QUICKSTART,
            "--weights",
            weights,
            "--input",
            shapes_image,
            "--output",
            str(tmp_path / "vis2"),
            "--register-voc",
            "trees_val_demo",
            voc,
            "val",
            "model.roi_heads.num_classes=null",
            "dataloader.test.dataset.names=trees_val_demo",
        ]
    )


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_files_carry_the_description(trees_model, shapes_image, tmp_path, fmt):
    out, _ = trees_model
    predictor = Predictor(QUICKSTART, os.path.join(out, "model_final.pth"), device="cpu", overrides=UNREGISTERED)
    path = export(predictor.model, image_tensor(shapes_image, "BGR"), fmt, str(tmp_path), predictor.model_metadata())
    meta = exported_metadata(path)
    assert meta["thing_classes"] == TREES and meta["test_resize"]["short_edge_length"] == 128
    assert meta["outputs"] == ["boxes", "scores", "classes"]
    if fmt == "torchscript":  # and beside the file, for readers without torch
        with open(path + ".json") as f:
            assert json.load(f) == meta
    else:
        import onnx

        props = {p.key: p.value for p in onnx.load(path).metadata_props}
        assert json.loads(props["cascade_det_model"]) == meta


def test_a_checkpoint_written_by_training_holds_only_plain_values(trees_model):
    out, _ = trees_model
    meta = torch.load(os.path.join(out, "model_final.pth"), weights_only=True)["cascade_det_model"]
    assert json.loads(json.dumps(meta)) == meta and meta["datasets"] == ["trees_train"]
