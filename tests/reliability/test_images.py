"""Images read as the eye sees them: every bit depth and mode a user hands in (16-bit, grayscale, palette, CMYK,
RGBA, EXIF-rotated) decodes to the same picture in training and evaluation (Detectron2's reader, as its
DatasetMapper calls it), `Predictor`, `demo` and `browse`, and to what OpenCV shows; `Predictor` refuses arrays that
are no picture with what it expects, and converts the ones that are."""

import cv2
import numpy as np
import pytest
from PIL import Image

import cascade_det  # noqa: F401  (the reader fix is applied on import)
from cascade_det.demo import _read as demo_read
from cascade_det.errors import InputError
from cascade_det.predictor import as_uint8_image

from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils


def _picture(height=48, width=64):
    """A smooth colour picture (BGR uint8) with a bright corner, so a rotation or a clipped range shows."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=2)
    image[:8, :8] = 250
    return image.astype(np.uint8)


def _files(folder):
    """{mode: (path, the picture as OpenCV reads it, tolerance)} for each kind of file."""
    bgr = _picture()
    gray16 = (np.mgrid[0:48, 0:64][1] * 1000).astype(np.uint16)  # up to 63000: all above 255
    files = {}
    cv2.imwrite(str(folder / "gray16.png"), gray16)
    files["16-bit grayscale PNG"] = ("gray16.png", 0)
    Image.fromarray(bgr[:, :, 0]).save(folder / "gray.png")
    files["8-bit grayscale"] = ("gray.png", 0)
    Image.fromarray(bgr[:, :, ::-1]).convert("P").save(folder / "palette.png")
    files["palette"] = ("palette.png", 0)
    Image.fromarray(np.dstack([bgr[:, :, ::-1], np.full((48, 64), 128, np.uint8)]), "RGBA").save(folder / "rgba.png")
    files["RGBA"] = ("rgba.png", 0)
    Image.fromarray(bgr[:, :, ::-1]).convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    files["CMYK JPEG"] = ("cmyk.jpg", 2)
    rotated = Image.fromarray(bgr[:, :, ::-1])
    exif = rotated.getexif()
    exif[0x0112] = 6  # shown turned by 90 degrees
    rotated.save(folder / "exif6.jpg", exif=exif, quality=95)
    files["EXIF-rotated JPEG"] = ("exif6.jpg", 0)
    return {mode: (str(folder / name), tolerance) for mode, (name, tolerance) in files.items()}


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    return _files(tmp_path_factory.mktemp("modes"))


@pytest.mark.parametrize(
    "mode", ["16-bit grayscale PNG", "8-bit grayscale", "palette", "RGBA", "CMYK JPEG", "EXIF-rotated JPEG"]
)
def test_every_mode_decodes_to_the_picture_opencv_shows_in_training_predictor_and_demo(image_files, mode):
    path, tolerance = image_files[mode]
    seen = cv2.imread(path, cv2.IMREAD_COLOR)  # what the user sees: OpenCV applies EXIF orientation too
    if mode == "16-bit grayscale PNG":
        assert seen.max() > 200 and seen.min() < 10  # not all white
    training = DatasetMapper(is_train=False, augmentations=[], image_format="BGR")({"file_name": path})["image"]
    read = {
        "training/evaluation": training.permute(1, 2, 0).numpy(),
        "Predictor / browse (read_image)": utils.read_image(path, format="BGR"),
        "demo": demo_read(path),
    }
    for where, image in read.items():
        assert image.shape == seen.shape, (where, image.shape, seen.shape)
        difference = np.abs(image.astype(int) - seen.astype(int)).max()
        assert difference <= tolerance, f"{mode} read by {where} differs from OpenCV's by {difference}"


@pytest.mark.parametrize(
    "array, message",
    [
        (None, "the image is None"),
        (np.zeros((0, 10, 3), np.uint8), "the image is empty"),
        (np.ones((20, 20, 3), bool), "bool array"),
        (np.random.default_rng(0).random((20, 20, 3)), "looks like a 0..1 scale"),
        (np.full((20, 20, 3), np.nan), "NaN or infinite"),
        (np.full((20, 20, 3), 300.0), "values in [300, 300]"),
        (np.zeros((20, 20, 2), np.uint8), "has shape (20, 20, 2)"),
        (np.array([["a"]]), "array of <U1"),
    ],
    ids=["None", "empty", "bool", "float 0..1", "NaN", "out of range", "two channels", "strings"],
)
def test_predictor_refuses_arrays_that_are_no_picture_saying_what_it_expects(array, message):
    with pytest.raises(InputError) as refusal:
        as_uint8_image(array)
    assert message in str(refusal.value) and "expected" in str(refusal.value)


def test_predictor_converts_grayscale_bgra_16_bit_and_float_pictures():
    bgr = _picture()
    assert np.array_equal(as_uint8_image(bgr[:, :, 0]), np.repeat(bgr[:, :, :1], 3, axis=2))
    assert np.array_equal(as_uint8_image(np.dstack([bgr, np.zeros((48, 64), np.uint8)])), bgr)
    assert np.array_equal(as_uint8_image(bgr.astype(np.uint16) * 256 + 7), bgr)  # OpenCV's 16 -> 8 bits
    assert np.array_equal(as_uint8_image(bgr.astype(np.float64)), bgr)


def test_predictor_sees_a_16_bit_file_and_its_array_alike(image_files):
    path, _ = image_files["16-bit grayscale PNG"]
    from_file = utils.read_image(path, format="BGR")
    from_array = as_uint8_image(cv2.imread(path, cv2.IMREAD_UNCHANGED))
    assert np.array_equal(from_file, from_array)
