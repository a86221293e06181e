"""The deploy benchmark runs end to end (smoke mode) and reports every variant, its ratios and its checks."""

import json

from .conftest import run_benchmark


def test_smoke_run_times_every_variant_and_checks_the_exports_against_the_eager_model(tmp_path):
    path = tmp_path / "deploy.json"
    out = run_benchmark("benchmark_deploy.py", "--smoke", "--json", str(path))
    assert "| 64x64 | onnxruntime | " in out.stdout and "vs ours eager" in out.stdout
    results = json.loads(path.read_text())
    for size in ("64x64", "96x64"):  # exported at 64x64, run unchanged at 96x64
        r = results["sizes"][size]
        assert set(r["variants"]) == {
            "builtin",
            "ours",
            "ours+fold+cl",
            "torchscript",
            "onnxruntime",
            "onnxruntime int8",
        }
        assert all(v["median_s"] > 0 for v in r["variants"].values())
        assert r["checks"]["detections"] > 0
        for exported in ("torchscript", "onnxruntime"):
            assert r["checks"][exported]["vs_ours"]["boxes"] <= 0.05
            assert r["checks"][exported]["same_as_builtin"] > 0.9
        overlap = r["checks"]["onnxruntime int8"]["vs_fp32"]
        assert overlap["reference"] > 0 and 0 <= overlap["matched"] <= overlap["reference"]
