"""Launch anywhere, on CPU over gloo: torchrun, Detectron2's --num-machines on two "machines" of localhost, and
SLURM's variables set by hand; each process joins as one rank and the run trains as one."""

import os
import socket
import sys

from ..conftest import ROOT, TWO_ITERATIONS, run_together

RUN = [*TWO_ITERATIONS, "dataloader.test.dataset.names=[]"]
TRAIN_NET = os.path.join(ROOT, "train_net.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in [k for k in env if k.startswith(("SLURM_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))]:
        del env[key]
    return env


def logs(out):
    """The run's log and its rank-1 log (Detectron2 writes log.txt.rank1 for the second process)."""
    with open(os.path.join(out, "log.txt")) as f0, open(os.path.join(out, "log.txt.rank1")) as f1:
        return f0.read(), f1.read()


def assert_one_run_of_two_ranks(results, out, joined=None):
    for code, output in results:
        assert code == 0, output[-3000:]
    rank0, rank1 = logs(out)
    assert "Rank of current process: 0. World size: 2" in rank0
    assert "Rank of current process: 1. World size: 2" in rank1
    if joined:
        assert f"Joined as rank 0 of 2 ({joined}, gloo" in rank0 and f"Joined as rank 1 of 2 ({joined}, gloo" in rank1
    assert os.path.isfile(os.path.join(out, "model_final.pth"))


def test_torchrun_with_two_ranks_joins_them_and_spawns_nothing(tmp_path):
    out = str(tmp_path / "run")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        TRAIN_NET,
        *RUN,
        f"train.output_dir={out}",
    ]
    assert_one_run_of_two_ranks(run_together([cmd], [base_env()]), out, joined="torchrun")


def test_two_machines_of_detectron2s_launch_on_localhost(tmp_path):
    out, url = str(tmp_path / "run"), f"tcp://127.0.0.1:{free_port()}"
    commands = [
        [
            sys.executable,
            TRAIN_NET,
            "--num-gpus",
            "1",
            "--num-machines",
            "2",
            "--machine-rank",
            str(rank),
            "--dist-url",
            url,
            *RUN,
            f"train.output_dir={out}",
        ]
        for rank in (0, 1)
    ]
    assert_one_run_of_two_ranks(run_together(commands, [base_env(), base_env()]), out)


def test_slurm_variables_make_each_task_one_rank(tmp_path):
    out, port = str(tmp_path / "run"), str(free_port())
    envs = []
    for rank in (0, 1):
        env = base_env()
        env.update(
            SLURM_JOB_ID="4242",
            SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(rank),
            SLURM_NTASKS="2",
            SLURM_NODELIST="localhost",
            SLURM_JOB_NUM_NODES="1",
            MASTER_PORT=port,
        )
        envs.append(env)
    commands = [[sys.executable, TRAIN_NET, *RUN, f"train.output_dir={out}"]] * 2
    assert_one_run_of_two_ranks(run_together(commands, envs), out, joined="SLURM")
    assert f"gloo at tcp://localhost:{port})" in logs(out)[1]
