"""The sampling-parity benchmark runs end to end on MMDetection's initial weights of the end-to-end network and
reports every loss term and every stage's RoI counts for both frameworks."""

import json

from .conftest import run_benchmark

LOSSES = {"loss_rpn_cls", "loss_rpn_loc"} | {f"loss_{k}_stage{t}" for k in ("cls", "box_reg") for t in range(3)}


def test_smoke_run_reports_both_frameworks_losses_and_roi_counts(tmp_path):
    import argparse

    import mmdet_parity_end_to_end

    init = tmp_path / "init_mmdet.pth"  # MMDetection's initial weights, as the end-to-end parity's worker writes them
    mmdet_parity_end_to_end.mmdet_worker(argparse.Namespace(init_only=str(init), work_dir=str(tmp_path), iters=1))
    path = tmp_path / "sampling.json"
    out = run_benchmark(
        "mmdet_parity_sampling.py", "--checkpoint", str(init), "--batches", "2", "--draws", "2", "--json", str(path)
    )
    assert "| stage2/sampled bg |" in out.stdout
    report = json.loads(path.read_text())
    assert set(report["losses"]) == LOSSES
    for name, result in report["losses"].items():
        assert result["mmdet"][0] > 0 and result["ours"][0] > 0, name
    assert len(report["rois"]) == 3 * 4
    # Stage 0 draws from the RPN's proposals and the ground truth: the same candidates, labelled alike, in both.
    for name in ("candidates", "positives"):
        counts = report["rois"][f"stage0/{name}"]
        assert counts["mmdet"] == counts["ours"] and counts["ours"][0] > 0, name
