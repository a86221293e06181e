"""`python -m cascade_det.export`: TorchScript and ONNX files that give the eager model's detections at image sizes
other than the one they were traced on, for box and mask cascades."""

import os

import cv2
import pytest
import torch

from cascade_det.engine import load_config
from cascade_det.export import compare, export, image_tensor, load_exported, main, within_tolerance

from detectron2.config import instantiate

from .conftest import QUICKSTART, ROOT, small_cascade_mask_model

# (height, width) besides the sample's 128 x 128: wider, taller, larger and not multiples of the FPN stride
OTHER_SIZES = [(96, 200), (200, 120), (256, 256), (131, 77)]


def images_of_other_sizes(shapes_image):
    image = cv2.imread(shapes_image)
    return [torch.as_tensor(cv2.resize(image, (w, h)).transpose(2, 0, 1).copy()).float() for h, w in OTHER_SIZES]


def quickstart_model(quickstart_weights):
    model = instantiate(load_config(os.path.join(ROOT, QUICKSTART), ["train.device=cpu"]).model)
    model.load_state_dict(torch.load(quickstart_weights)["model"])
    return model.eval()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_quickstart_matches_the_eager_model_at_sizes_it_was_not_traced_on(
    fmt, quickstart_weights, shapes_image, tmp_path, capsys
):
    (path,) = main(
        ["--config-file", QUICKSTART, "--format", fmt, "--output", str(tmp_path), "--sample-image", shapes_image]
        + ["--weights", quickstart_weights]
    )
    assert path == str(tmp_path / ("model.ts" if fmt == "torchscript" else "model.onnx"))
    assert "largest box difference" in capsys.readouterr().out
    exported, model = load_exported(path), quickstart_model(quickstart_weights)
    for image in images_of_other_sizes(shapes_image):
        diff = compare(model, exported, image)
        assert diff["detections"] > 0 and within_tolerance(diff), (image.shape, diff)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_cascade_mask_model_gives_the_eager_masks_at_other_sizes(fmt, shapes_image, tmp_path):
    model = small_cascade_mask_model()
    sample = image_tensor(shapes_image, "BGR")
    exported = load_exported(export(model, sample, fmt, str(tmp_path)))
    assert not any(m.training for m in model.modules())  # exporting leaves the model in eval mode
    for image in images_of_other_sizes(shapes_image)[:2]:
        diff = compare(model, exported, image)
        assert diff["detections"] > 0 and within_tolerance(diff) and diff["masks"] < 1e-4, (image.shape, diff)


def test_the_comparison_catches_an_export_of_a_different_model(quickstart_weights, shapes_image, tmp_path):
    model = quickstart_model(quickstart_weights)
    sample = image_tensor(shapes_image, "BGR")
    exported = load_exported(export(model, sample, "torchscript", str(tmp_path)))
    with torch.no_grad():
        model.roi_heads.box_predictor[2].bbox_pred.bias.add_(0.5)  # the last stage's boxes move
    assert not within_tolerance(compare(model, exported, sample))


def test_export_refuses_to_overwrite_and_names_missing_inputs(quickstart_weights, shapes_image, tmp_path, capsys):
    (tmp_path / "model.ts").write_bytes(b"an earlier export")
    args = ["--config-file", QUICKSTART, "--format", "torchscript", "--output", str(tmp_path)]
    with pytest.raises(SystemExit):
        main(args + ["--sample-image", shapes_image, "--weights", quickstart_weights])
    assert "model.ts exists; not overwriting it" in capsys.readouterr().err
    assert (tmp_path / "model.ts").read_bytes() == b"an earlier export"
    with pytest.raises(SystemExit):
        main(args[:-1] + [str(tmp_path / "new"), "--sample-image", str(tmp_path / "missing.png")])
    assert f"--sample-image {tmp_path / 'missing.png'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
