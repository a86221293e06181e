"""The deploy benchmark runs end to end (smoke mode) and reports every variant, its ratios and its checks."""

import importlib.util
import json
import os
import subprocess
import sys

from ..conftest import ROOT
from .conftest import run_benchmark

# OpenVINO is optional (not in the test environment): with it, the smoke run includes its variants; without it,
# --openvino must be refused with the install command before anything runs.
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def test_smoke_run_times_every_variant_and_checks_the_exports_against_the_eager_model(tmp_path):
    path = tmp_path / "deploy.json"
    openvino = ["--openvino"] if HAS_OPENVINO else []
    out = run_benchmark("benchmark_deploy.py", "--smoke", "--json", str(path), *openvino)
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
        } | ({"openvino", "openvino int8"} if HAS_OPENVINO else set())
        assert all(v["median_s"] > 0 for v in r["variants"].values())
        assert r["checks"]["detections"] > 0
        for exported in ("torchscript", "onnxruntime") + (("openvino",) if HAS_OPENVINO else ()):
            assert r["checks"][exported]["vs_ours"]["boxes"] <= 0.05
            assert r["checks"][exported]["same_as_builtin"] > 0.9
        overlap = r["checks"]["onnxruntime int8"]["vs_fp32"]
        assert overlap["reference"] > 0 and 0 <= overlap["matched"] <= overlap["reference"]


def test_openvino_without_the_package_is_refused_with_the_install_command():
    # Hidden where it is installed (the smoke run above then runs its variants), so the refusal is seen either way.
    code = "import sys; sys.modules['openvino'] = None; sys.argv[1:] = ['--smoke', '--openvino']; "
    code += (
        f"sys.path.insert(0, {os.path.join(ROOT, 'benchmarks')!r}); import benchmark_deploy; benchmark_deploy.main()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "pip install openvino" in out.stderr, out.stderr[-2000:]
