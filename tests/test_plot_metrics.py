"""`python -m cascade_det.plot_metrics OUTPUT_DIR`: a run's losses per stage, lr and AP curves as PNGs."""

import os

import pytest

from cascade_det.errors import InputError
from cascade_det.plot_metrics import main, read_metrics


def test_a_trained_runs_curves_are_drawn_into_a_new_folder(trees_model, tmp_path):
    out, _ = trees_model
    written = main([out, "--output", str(tmp_path / "curves")])
    assert [os.path.basename(p) for p in written] == ["losses.png", "lr.png", "ap.png"]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileExistsError):  # nothing is drawn over
        main([out, "--output", str(tmp_path / "curves")])
    series = read_metrics(os.path.join(out, "metrics.json"))
    assert {"loss_cls_stage0", "loss_box_reg_stage2", "lr", "per_stage_bbox/stage1/AP"} <= set(series)


def test_a_line_that_is_not_json_is_named(tmp_path):
    (tmp_path / "metrics.json").write_text('{"iteration": 0, "lr": 0.1}\nnot json\n')
    with pytest.raises(InputError, match=r"metrics.json, line 2"):
        read_metrics(str(tmp_path / "metrics.json"))
