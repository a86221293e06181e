"""The benchmark runs end to end (smoke mode: tiny sizes, one repeat) and reports every variant and ratio."""

import json

import pytest

from .conftest import run_benchmark


def test_help_describes_the_variants(capsys):
    import benchmark_cascade

    with pytest.raises(SystemExit) as exit_info:
        benchmark_cascade.parse_args(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "builtin" in out and "--smoke" in out


def test_smoke_run_prints_the_table_and_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    out = run_benchmark("benchmark_cascade.py", "--smoke", "--json", str(path))
    assert "| 64x64 | ours | " in out.stdout and "ratio" in out.stdout
    results = json.loads(path.read_text())
    for size in ("64x64", "96x64"):
        variants = results["sizes"][size]["variants"]
        assert set(variants) == {"builtin", "ours[torchvision roi_align]", "ours", "ours+fold", "ours+fold+cl"}
        for name, row in variants.items():
            assert row["infer_b1"]["median_s"] > 0
            assert ("train" in row) == (name != "ours+fold+cl") and row.get("train", {"images_per_s": 1})[
                "images_per_s"
            ] > 0
        outputs = results["sizes"][size]["outputs_vs_builtin"]
        assert outputs["ours"]["detections"] > 0 and outputs["ours"]["matched_fraction"] > 0.9
        assert results["sizes"][size]["profile_builtin"]["total"] > 0
        # Arithmetic per component: every stage's 2-fc box head runs on the same R RoIs at inference, each
        # 2 x (256*7*7 x 1024 + 1024 x 1024) multiply-accumulates, so the count is that times a whole R.
        gflop = results["sizes"][size]["gflop_ours+fold+cl"]
        per_roi = 2 * (256 * 7 * 7 * 1024 + 1024 * 1024) / 1e9
        heads = [gflop[f"stage{t}.box_head"] for t in range(3)]
        rois = heads[0] / per_roi
        assert heads[0] == heads[1] == heads[2] and rois >= 1 and abs(rois - round(rois)) < 1e-6, heads
        assert gflop["backbone"] > gflop["rpn"] > 0
    assert "cores" in results["machine"] and "machine: " in out.stdout
