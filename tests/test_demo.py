"""`python -m cascade_det.demo`: detections drawn on an image, a folder or a video, each stage's own beside the
model's with --per-stage, and nothing existing overwritten."""

import os

import cv2
import numpy as np
import pytest

from cascade_det.demo import main

from .conftest import QUICKSTART


def demo(weights, *args):
    return main(["--config-file", QUICKSTART, "--weights", weights, *args])


def test_an_image_is_drawn_at_its_size_and_per_stage_as_one_panel_per_stage_and_one_for_the_model(
    quickstart_weights, shapes_image, tmp_path
):
    (plain,) = demo(quickstart_weights, "--input", shapes_image, "--output", str(tmp_path / "plain"))
    (stages,) = demo(quickstart_weights, "--input", shapes_image, "--output", str(tmp_path / "stages"), "--per-stage")
    name = os.path.splitext(os.path.basename(shapes_image))[0] + ".png"
    assert plain == str(tmp_path / "plain" / name) and stages == str(tmp_path / "stages" / name)
    original, drawn, panels = cv2.imread(shapes_image), cv2.imread(plain), cv2.imread(stages)
    assert drawn.shape == original.shape and not np.array_equal(drawn, original)  # boxes were drawn on it
    assert panels.shape == (128, 4 * 128, 3)  # stage 0, 1, 2 and the model's output
    # every panel has detections drawn on the image (which ones each shows: tests/test_predictor.py)
    for t in range(4):
        panel = panels[24:, t * 128 : (t + 1) * 128].astype(int)  # below the panel's title
        assert np.abs(panel - original[24:]).max(axis=2).mean() > 5


def test_a_folder_gives_one_drawing_per_image_and_an_existing_one_is_never_overwritten(
    quickstart_weights, shapes_image, tmp_path
):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        cv2.imwrite(str(folder / name), cv2.imread(shapes_image))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    written = demo(quickstart_weights, "--input", str(folder), "--output", str(out), "--confidence-threshold", "0.2")
    assert sorted(os.listdir(out)) == ["a.png", "b.png"] and len(written) == 2
    before = (out / "a.png").read_bytes()
    with pytest.raises(FileExistsError, match="a.png exists; not overwriting it"):
        demo(quickstart_weights, "--input", str(folder / "a.png"), "--output", str(out))
    assert (out / "a.png").read_bytes() == before


def write_clip(path: str, image_path: str, frames: int, fourcc: str = "mp4v", step: int = 8) -> str:
    """A video of `frames` frames of the image at `image_path` (128 x 128), shifted by `step` pixels each."""
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 5, (128, 128))
    for shift in range(frames):
        writer.write(np.roll(cv2.imread(image_path), step * shift, axis=1))
    writer.release()
    return path


def test_a_video_is_drawn_frame_by_frame_into_an_mp4(quickstart_weights, shapes_image, tmp_path):
    clip = write_clip(str(tmp_path / "clip.mp4"), shapes_image, 3)
    (target,) = demo(quickstart_weights, "--input", clip, "--output", str(tmp_path / "out"), "--per-stage")
    capture = cv2.VideoCapture(target)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 3 and frames[0].shape == (128, 4 * 128, 3)
    assert os.listdir(tmp_path / "out") == ["clip.mp4"]  # no partial file left beside it


def test_an_input_that_names_nothing_is_refused_before_the_model_loads(tmp_path):
    with pytest.raises(FileNotFoundError, match="no image or video found"):
        demo("weights-never-read.pth", "--input", str(tmp_path / "*.jpg"), "--output", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
