"""Running a benchmark script as a user would, in smoke mode."""

import os
import subprocess
import sys

from ..conftest import ROOT


def run_benchmark(script: str, *args: str) -> subprocess.CompletedProcess:
    """`python benchmarks/<script> ARGS` on 2 threads; fails the test, with the output's end, if it fails."""
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out
