"""`python -m cascade_det.analyze`: parameters and FLOPs per component (backbone, RPN, each stage's box and mask
heads) that add up to the whole model's."""

import pytest

from cascade_det.analyze import analyze, main

from .conftest import QUICKSTART, small_cascade_mask_model


@pytest.fixture(scope="module")
def quickstart_report():
    return main(["--config-file", QUICKSTART, "--json"])


def test_components_add_up_to_the_whole_model(quickstart_report):
    report = dict(quickstart_report)
    total = report.pop("total")
    assert list(report) == ["backbone", "RPN", "stage 0 box", "stage 1 box", "stage 2 box"]
    assert sum(r["parameters"] for r in report.values()) == total["parameters"]
    # all but the ops fvcore does not count outside modules (box decoding, the image normalisation)
    assert 0.99 * total["gflops"] <= sum(r["gflops"] for r in report.values()) <= total["gflops"]
    stages = [report[f"stage {t} box"] for t in range(3)]
    assert stages[0] == stages[1] == stages[2] and stages[0]["gflops"] > 0


def test_yacs_twin_config_counts_the_same(quickstart_report):
    assert main(["--config-file", QUICKSTART.replace(".py", ".yaml"), "--json"]) == quickstart_report


def test_per_stage_mask_heads_are_counted_per_stage():
    report = analyze(small_cascade_mask_model(), 128, 160)
    assert [k for k in report if "mask" in k] == ["stage 0 mask", "stage 1 mask", "stage 2 mask"]
    assert report["stage 0 mask"]["parameters"] > 0 and report["stage 2 mask"]["gflops"] > 0
    assert sum(r["parameters"] for k, r in report.items() if k != "total") == report["total"]["parameters"]


def test_flops_grow_with_the_image_size_asked(quickstart_report, capsys):
    larger = main(["--config-file", QUICKSTART, "--size", "256x256"])
    assert "at 256x256" in capsys.readouterr().out
    assert larger["backbone"]["gflops"] == pytest.approx(4 * quickstart_report["backbone"]["gflops"], rel=0.05)
