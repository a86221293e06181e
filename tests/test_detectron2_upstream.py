"""Detectron2 main's own cascade export tests, run unchanged against our heads (Detectron2-main phase of .ci/run):
`tests/test_export_torchscript.py::TestTracing::testCascadeRCNN` and
`tests/test_export_onnx.py::TestONNXTracingExport::testCascadeRCNN`. The adaptation is the plugin
`tests/detectron2_upstream/plugin.py` (random weights instead of model-zoo ones, a generated sample image,
Detectron2's pooler, the TorchScript-based ONNX exporter the tests were written for; its docstring says why); the
tests' `skipIfOnCPUCI` is lifted by running them with `CI` unset. Detectron2's built-in cascade passes the same
adapted tests (CASCADE_DET_UPSTREAM_HEADS=CascadeROIHeads)."""

import os
import subprocess
import sys

import pytest

from .conftest import ROOT

UPSTREAM_TESTS = [
    "tests/test_export_torchscript.py::TestTracing::testCascadeRCNN",
    "tests/test_export_onnx.py::TestONNXTracingExport::testCascadeRCNN",
]


def upstream_source():
    """Detectron2 main's source tree as .ci/env.sh unpacked it (its tests are not installed with the package)."""
    return os.path.join(os.environ.get("VIRTUAL_ENV", os.path.join(ROOT, ".venv")), "detectron2-main-src")


def run_upstream(tests, heads):
    env = {k: v for k, v in os.environ.items() if k != "CI"}  # lifts Detectron2's skipIfOnCPUCI
    env.update(
        CASCADE_DET_UPSTREAM_HEADS=heads, OMP_NUM_THREADS="2", PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", "")
    )
    source = upstream_source()
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "tests.detectron2_upstream.plugin", "-c", os.devnull]
        + [
            "--rootdir",
            source,
            "-p",
            "no:cacheprovider",
            "--import-mode=importlib",
            *[os.path.join(source, t) for t in tests],
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.skipif(
    os.environ.get("CASCADE_DET_D2") != "main",
    reason="Detectron2 main's own tests: they run in the Detectron2-main phase of .ci/run (CASCADE_DET_D2=main)",
)
def test_detectron2_mains_cascade_export_tests_pass_with_our_heads():
    assert os.path.isdir(upstream_source()), upstream_source()
    proc = run_upstream(UPSTREAM_TESTS, "CascadeRCNNROIHeads")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "2 passed" in output and "skipped" not in output, output[-3000:]
