"""`train_net.py --eval-only --show-dir DIR`: every test image drawn with the model's detections, in the same pass
as the evaluation; a used DIR or a --show-dir without --eval-only is refused before anything is written."""

import os

import pytest

from cascade_det.engine import ConfigValueError
from cascade_det.engine.run_dir import OutputDirError

from ..reliability.conftest import run_main

QUICKSTART = "configs/Shapes/cascade_rcnn_R_18_FPN.py"


def eval_only(trees_model, tmp_path, *flags):
    out, voc = trees_model
    return run_main(
        "--eval-only",
        *flags,
        *("--register-voc", "trees_val", voc, "val"),
        "--config-file",
        QUICKSTART,
        "model.roi_heads.num_classes=3",
        "dataloader.test.dataset.names=trees_val",
        "dataloader.test.num_workers=0",
        f"train.output_dir={tmp_path / 'eval_run'}",
        f"train.init_checkpoint={os.path.join(out, 'model_final.pth')}",
    )


def test_show_dir_draws_every_test_image_beside_the_evaluation(trees_model, tmp_path):
    show = tmp_path / "shown"
    assert eval_only(trees_model, tmp_path, "--show-dir", str(show), "--show-score-thr", "0.0") is None
    _, voc = trees_model
    with open(os.path.join(voc, "ImageSets", "Main", "val.txt")) as f:
        stems = [line.strip() for line in f if line.strip()]
    assert sorted(os.listdir(show)) == sorted(f"{s}.png" for s in stems)
    assert os.path.isfile(tmp_path / "eval_run" / "inference" / "eval_1" / "coco_instances_results.json")


def test_a_used_show_dir_or_one_without_eval_only_is_refused_first(trees_model, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "mine.png").write_bytes(b"x")
    error = eval_only(trees_model, tmp_path, "--show-dir", str(used))
    assert isinstance(error, OutputDirError) and "--show-dir" in str(error)
    assert not (tmp_path / "eval_run").exists() and os.listdir(used) == ["mine.png"]
    error = run_main("--show-dir", str(tmp_path / "new"), "--config-file", QUICKSTART, f"train.output_dir={tmp_path}/x")
    assert isinstance(error, ConfigValueError) and "add --eval-only" in str(error)
    with pytest.raises(SystemExit):  # argparse: the threshold is a number
        run_main("--eval-only", "--show-dir", "d", "--show-score-thr", "abc")
