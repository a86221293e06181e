"""Where the benchmarks write their measurements: `--json PATH`, never over an earlier file."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cascade_det.weights import atomic_write  # noqa: E402


def write_results(report: dict, path: str) -> str:
    """Write `report` as JSON at `path`, or, if that file exists, beside it with the time in its name; whole or not
    at all. Returns the path written."""
    if os.path.exists(path):
        base, ext = os.path.splitext(path)
        path = f"{base}.{time.strftime('%Y%m%d-%H%M%S')}{ext}"
        print(f"--json file exists; writing {path} instead (nothing is overwritten)")
    with atomic_write(path) as f:
        f.write(json.dumps(report, indent=1).encode())
    print(f"wrote {path}")
    return path
