"""The tools refuse what they cannot use in one message naming the file or the option, before they write anything:
numeric options out of range, outputs that are files or folders that cannot be written, results that cannot be
scored as they are, unreadable inputs and truncated videos."""

import copy
import json
import os

import cv2
import numpy as np
import pytest

from cascade_det.errors import InputError, OutputPathError, UnreadableFileError

from ..conftest import QUICKSTART
from ..test_demo import write_clip
from ..test_evaluate import GT, RESULTS


@pytest.mark.parametrize(
    "tool, argv, message",
    [
        ("demo", ["--confidence-threshold", "1.5"], "1.5: expected a score between 0 and 1"),
        ("demo", ["--confidence-threshold", "nan"], "nan: expected a score between 0 and 1"),
        ("browse", ["--limit", "-1"], "-1: expected 0 or more"),
        ("analyze", ["--size", "abc"], "'abc': expected HxW"),
        ("evaluate", ["--score-threshold", "2"], "2: expected a score between 0 and 1"),
    ],
)
def test_numeric_options_are_validated_with_a_message_naming_the_option(tool, argv, message, capsys, tmp_path):
    import importlib

    main = importlib.import_module(f"cascade_det.{tool}").main
    base = {
        "demo": ["--config-file", QUICKSTART, "--input", "x.png", "--output", str(tmp_path)],
        "browse": ["--config-file", QUICKSTART, "--output", str(tmp_path)],
        "analyze": ["--config-file", QUICKSTART],
        "evaluate": ["gt.json", "results.json"],
    }[tool]
    with pytest.raises(SystemExit) as stop:
        main(base + argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and argv[0] in err


def _evaluate_files(tmp_path, gt=None, results=None):
    """(ground-truth path, results path): `gt` a dataset or raw text (default: test_evaluate's), `results` a list
    (default: test_evaluate's boxes)."""
    gt_path, results_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(gt if isinstance(gt, str) else json.dumps(GT if gt is None else gt))
    boxes = [{k: v for k, v in r.items() if k != "segmentation"} for r in RESULTS]
    results_path.write_text(json.dumps(boxes if results is None else results))
    return str(gt_path), str(results_path)


def _integer_ids(dataset):
    dataset = copy.deepcopy(dataset)
    numbers = {image["id"]: k + 1 for k, image in enumerate(dataset["images"])}
    for image in dataset["images"]:
        image["id"] = numbers[image["id"]]
    for annotation in dataset["annotations"]:
        annotation["image_id"] = numbers[annotation["image_id"]]
    dataset["categories"] = [{"id": c["id"] + 1, "name": c["name"]} for c in dataset["categories"]]
    for annotation in dataset["annotations"]:
        annotation["category_id"] += 1
    return dataset


def _results(**change):
    rows = [{k: v for k, v in r.items() if k != "segmentation"} for r in RESULTS]
    for row in rows:
        row["image_id"] = {"img_a": 1, "img_b": 2}[row["image_id"]]
        row["category_id"] += 1
        row.update(change)
    return rows


@pytest.mark.parametrize(
    "case, gt, results, message",
    [
        ("broken ground truth", "{not json", None, "(ground truth) cannot be read as JSON"),
        ("unknown image", _integer_ids(GT), _results(image_id=9), "detections of 1 images the ground truth does not"),
        ("NaN score", _integer_ids(GT), _results(score=float("nan")), "have a score or box that is not a number"),
        ("0-based categories", _integer_ids(GT), [{**r, "category_id": r["category_id"] - 1} for r in _results()],
         "They look 0-based"),
    ],
)  # fmt: skip
def test_evaluate_refuses_results_it_cannot_score_before_writing(tmp_path, case, gt, results, message):
    from cascade_det.evaluate import main

    gt_path, results_path = _evaluate_files(tmp_path, gt, results)
    output = tmp_path / "evaluation"
    with pytest.raises(InputError) as refusal:
        main([gt_path, results_path, "--output", str(output)])
    assert message in str(refusal.value) and not output.exists()


def test_evaluate_refuses_an_object_array_per_stage_file_before_writing(tmp_path):
    from cascade_det.evaluate import main

    gt_path, results_path = _evaluate_files(tmp_path)
    stages = tmp_path / "per_stage_detections.npz"
    np.savez(stages, stage0=np.array([{"not": "rows"}], dtype=object))
    output = tmp_path / "evaluation"
    with pytest.raises(InputError, match="cannot be read as the .npz of our per-stage evaluation"):
        main([gt_path, results_path, "--per-stage", str(stages), "--output", str(output)])
    assert not output.exists()


def test_export_into_a_file_is_refused_before_the_model_loads(tmp_path, shapes_image):
    from cascade_det.export import main

    target = tmp_path / "model.onnx"
    target.write_text("a file")
    with pytest.raises(OutputPathError, match="is a file, not a folder"):
        main(["--config-file", QUICKSTART, "--format", "torchscript", "--output", str(target),
              "--sample-image", shapes_image, "--weights", "unused.pth"])  # fmt: skip


def test_convert_into_a_missing_folder_makes_it(tmp_path, quickstart_weights):
    from cascade_det.convert import main

    target = tmp_path / "new" / "folder" / "model.safetensors"
    main(["to-safetensors", quickstart_weights, str(target)])
    assert target.is_file()


def test_demo_decodes_every_image_before_drawing_any(quickstart_weights, shapes_image, tmp_path):
    from cascade_det.demo import main

    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), cv2.imread(shapes_image))
    (folder / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    with pytest.raises(UnreadableFileError, match="cannot read the image .*b.jpg"):
        main(
            ["--config-file", QUICKSTART, "--weights", quickstart_weights, "--input", str(folder), "--output", str(out)]
        )
    assert not out.exists()  # nothing drawn, so a rerun after the fix is not refused by half the drawings


def test_demo_reports_a_truncated_video_instead_of_drawing_part_of_it(quickstart_weights, shapes_image, tmp_path):
    from cascade_det.demo import main

    clip = write_clip(str(tmp_path / "clip.avi"), shapes_image, 12, fourcc="MJPG", step=4)
    with open(clip, "r+b") as f:
        f.truncate(int(os.path.getsize(clip) * 0.5))
    out = tmp_path / "out"
    with pytest.raises(UnreadableFileError, match=r"the video stopped at frame \d+ of the 12 its header announces"):
        main(["--config-file", QUICKSTART, "--weights", quickstart_weights, "--input", clip, "--output", str(out)])
    assert not os.listdir(out)
