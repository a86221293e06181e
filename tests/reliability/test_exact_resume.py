"""Exact resume: a run killed with SIGKILL after a checkpoint and resumed with --resume ends with the same weights,
bit for bit, as the run that was never interrupted; with data-loader workers, for 1 process and for 2 (gloo)."""

import os
import re
import subprocess
import sys

import pytest
import torch

from ..conftest import ROOT, TEST_DEVICE, THREADS, run_together

KILL = os.path.join(os.path.dirname(__file__), "kill_at.py")
# 4 iterations at batch 2 with loader workers, checkpoints after iterations 1 and 3; no evaluation; few proposals
# (the resume path is what is tested, not the detector).
RUN = [
    "--config-file",
    "configs/Shapes/cascade_rcnn_R_18_FPN.py",
    "train.max_iter=4",
    "model.proposal_generator.post_nms_topk=[128,64]",
    "train.eval_period=0",
    "train.checkpointer.period=2",
    "train.checkpointer.max_to_keep=null",
    "train.log_period=1",
    "dataloader.train.total_batch_size=2",
    "dataloader.test.dataset.names=[]",
    f"train.device={TEST_DEVICE}",
]


def killed_at(iteration, *args, num_threads=THREADS):
    env = dict(os.environ, OMP_NUM_THREADS=str(num_threads))
    return subprocess.run(
        [sys.executable, KILL, str(iteration), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
    )


def final_weights(folder):
    return torch.load(os.path.join(folder, "model_final.pth"), weights_only=False)["model"]


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


# One process is what a GPU user runs (the device kit runs it on CUDA); on the CPU the 2-process run covers the same
# resume path (model, optimizer, scheduler, RNG and loader state from the checkpoint) plus the process group's, and the
# suite's time budget has room for one of the two.
ONE_PROCESS = pytest.param(
    1,
    id="1-process",
    marks=pytest.mark.skipif(TEST_DEVICE == "cpu", reason="on the CPU the 2-process variant runs the same resume"),
)


@pytest.mark.device
@pytest.mark.parametrize("processes", [ONE_PROCESS, pytest.param(2, id="2-processes-gloo")])
def test_sigkill_then_resume_ends_bitwise_equal_to_the_uninterrupted_run(tmp_path, processes):
    launch = ["--num-gpus", str(processes), "--dist-url", "auto"] if processes > 1 else []
    workers = [f"dataloader.train.num_workers={2 if processes == 1 else 1}"]
    threads = THREADS if processes == 1 else 1
    killed, whole = str(tmp_path / "killed"), str(tmp_path / "whole")

    # A run without a seed is killed at the start of iteration 3: its checkpoint of iteration 1 survives.
    proc = killed_at(3, *launch, *RUN, *workers, "train.seed=-1", f"train.output_dir={killed}", num_threads=threads)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert os.path.isfile(os.path.join(killed, "model_0000001.pth"))
    assert not os.path.exists(os.path.join(killed, "model_final.pth"))
    seed = int(re.search(r"this run's seed is (\d+)", proc.stdout).group(1))

    # --resume continues it (with the seed it chose, saved in its checkpoint) to the weights the uninterrupted run
    # with that seed ends with (the two run at once: each is mostly process start-up).
    train_net = [sys.executable, os.path.join(ROOT, "train_net.py"), *launch]
    (code, resumed), (whole_code, uninterrupted) = run_together(
        [
            [*train_net, "--resume", *RUN, *workers, "train.seed=-1", f"train.output_dir={killed}"],
            [*train_net, *RUN, *workers, f"train.seed={seed}", f"train.output_dir={whole}"],
        ],
        [dict(os.environ, OMP_NUM_THREADS=str(threads))] * 2,
    )
    assert code == 0, resumed[-3000:]
    assert "Resuming at iteration 2" in resumed and f"Resuming with the checkpoint's seed {seed}" in resumed
    assert whole_code == 0, uninterrupted[-3000:]
    assert_bitwise_equal(final_weights(killed), final_weights(whole))
