"""The backbone benchmark runs end to end (smoke mode: tiny networks) and reports, for both recipes, inference,
and training time and memory with and without activation checkpointing, with their ratios."""

import json

from .conftest import run_benchmark


def test_smoke_run_reports_both_recipes_with_and_without_checkpointing(tmp_path):
    path = tmp_path / "backbones.json"
    out = run_benchmark("benchmark_backbones.py", "--smoke", "--json", str(path))
    results = json.loads(path.read_text())
    rows = results["sizes"]["96x64"]
    assert set(rows) == {"swin_T", "swin_T+checkpoint", "convnext_T", "convnext_T+checkpoint"}
    for name, row in rows.items():
        assert row["train"]["median_s"] > 0 and row["peak_mem_train_mb"] >= 0
        assert ("infer_b1" in row) == ("+checkpoint" not in name)
    assert "| 96x64 | swin_T+checkpoint | - |" in out.stdout and "checkpoint/plain" in out.stdout
    assert "cores" in results["machine"]
