"""Launch one process per GPU (or CPU worker) on one machine or many: Detectron2's way, torchrun, or SLURM.

* Detectron2's `--num-gpus N [--num-machines M --machine-rank R --dist-url tcp://HOST:PORT]`: this launcher starts
  N processes on this machine (with CUDA: Detectron2's own `launch`, NCCL; without: N CPU processes over gloo, so
  the distributed path runs and is tested on a CPU machine too).
* torchrun (`torchrun --nnodes M --nproc_per_node N train_net.py ...`): the process already is one rank; RANK,
  WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT are read and used as they are, nothing is
  spawned.
* SLURM (`srun --ntasks-per-node N python train_net.py ...`, more than one task): likewise, from SLURM_PROCID,
  SLURM_NTASKS, SLURM_LOCALID and the job's node list (its first node is the rendezvous; read by submitit's
  SlurmJobEnvironment). The port is MASTER_PORT, else the one of --dist-url tcp://HOST:PORT, else one derived from
  SLURM_JOB_ID (the same for every task of the job).
"""

import functools
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Optional
from urllib.parse import urlparse

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import launch as d2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT, _find_free_port
from detectron2.utils import comm

from ..errors import USER_ERROR_EXIT, ConfigValueError, WorkerStoppedError, exit_on_user_error

__all__ = ["ClusterRank", "cluster_rank", "how_joined", "launch"]

logger = logging.getLogger("cascade_det")
_joined = ""  # how this process joined its run, for the run's log (written once logging is set up)


def how_joined() -> str:
    """How this process joined a multi-process run ("" for a single process), e.g. "rank 1 of 2 (torchrun, gloo at
    host:port)"."""
    return _joined


@dataclass(frozen=True)
class ClusterRank:
    """This process's place in a job that a cluster tool (torchrun, SLURM) started one process per rank for."""

    source: str  # "torchrun" or "SLURM"
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int


def _slurm_port(dist_url: Optional[str]) -> int:
    if os.environ.get("MASTER_PORT"):
        return int(os.environ["MASTER_PORT"])
    if dist_url and dist_url.startswith("tcp://") and urlparse(dist_url).port:
        return int(urlparse(dist_url).port)
    return 20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 40000


def cluster_rank(dist_url: Optional[str] = None) -> Optional[ClusterRank]:
    """The rank torchrun or SLURM gave this process, from their environment variables; None when neither started
    it (or SLURM started a single task, which then launches its processes itself)."""
    env = os.environ
    if all(k in env for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")):
        world = int(env["WORLD_SIZE"])
        return ClusterRank(
            "torchrun",
            int(env["RANK"]),
            world,
            int(env["LOCAL_RANK"]),
            int(env.get("LOCAL_WORLD_SIZE", world)),
            env["MASTER_ADDR"],
            int(env["MASTER_PORT"]),
        )
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        from submitit.slurm.slurm import SlurmJobEnvironment

        job = SlurmJobEnvironment()
        if "SLURM_JOB_NODELIST" not in env and "SLURM_NODELIST" in env:
            os.environ["SLURM_JOB_NODELIST"] = env["SLURM_NODELIST"]
        nodes = max(1, int(env.get("SLURM_JOB_NUM_NODES", env.get("SLURM_NNODES", "1"))))
        return ClusterRank(
            "SLURM",
            job.global_rank,
            job.num_tasks,
            job.local_rank,
            job.num_tasks // nodes,
            job.hostnames[0],
            _slurm_port(dist_url),
        )
    return None


def launch(
    main_func,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = None,
    args=(),
    timeout: timedelta = DEFAULT_TIMEOUT,
):
    """Same arguments as `detectron2.engine.launch`. Under torchrun or SLURM this process is one rank: it joins the
    job (see the module docstring) and the process-count arguments are not used. Without CUDA,
    `num_gpus_per_machine` is the number of CPU processes to start on this machine."""
    rank = cluster_rank(dist_url)
    if rank is not None:
        if num_gpus_per_machine > 1 or num_machines > 1:
            logger.warning(
                "%s started this process as rank %d of %d: --num-gpus/--num-machines are not used",
                rank.source,
                rank.rank,
                rank.world_size,
            )
        return _run_as_rank(main_func, rank, args, timeout)
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    # In each started process a user error is printed as its message and ends that process with status 2; this
    # process then raises one WorkerStoppedError instead of the processes' tracebacks.
    main_func = functools.partial(exit_on_user_error, main_func)
    try:
        if torch.cuda.is_available():
            return d2_launch(main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args, timeout)
        if dist_url == "auto":
            if num_machines != 1:
                raise ConfigValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT of machine 0")
            dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
        mp.spawn(
            _cpu_worker,
            nprocs=num_gpus_per_machine,
            args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
            daemon=False,
        )
    except mp.ProcessExitedException as e:
        if e.exit_code != USER_ERROR_EXIT:
            raise
        raise WorkerStoppedError(
            f"process {e.error_index} of this machine stopped on the error printed above"
        ) from None


def _cpu_worker(local_rank, main_func, world_size, procs_per_machine, machine_rank, dist_url, args, timeout):
    rank = ClusterRank(
        "launch", machine_rank * procs_per_machine + local_rank, world_size, local_rank, procs_per_machine, "", 0
    )
    _join(rank, "gloo", dist_url, timeout)
    _run(main_func, args)


def _run_as_rank(main_func, rank: ClusterRank, args, timeout):
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(rank.local_rank)
    _join(rank, backend, f"tcp://{rank.master_addr}:{rank.master_port}", timeout)
    logger.info(
        "Joined as rank %d of %d (%s, %s at %s:%d)",
        rank.rank,
        rank.world_size,
        rank.source,
        backend,
        rank.master_addr,
        rank.master_port,
    )
    return _run(main_func, args)


def _join(rank: ClusterRank, backend: str, init_method: str, timeout) -> None:
    """Join the process group, and make Detectron2's per-machine group (comm.get_local_rank / get_local_size)."""
    global _joined
    dist.init_process_group(
        backend=backend, init_method=init_method, world_size=rank.world_size, rank=rank.rank, timeout=timeout
    )
    _joined = f"rank {rank.rank} of {rank.world_size} ({rank.source}, {backend} at {init_method})"
    if not torch.cuda.is_available():
        # The processes share the machine's cores; without this each would start one thread per core.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // rank.local_world_size))
    assert comm._LOCAL_PROCESS_GROUP is None
    machines = rank.world_size // rank.local_world_size
    for i in range(machines):  # every process creates every group, in the same order
        group = dist.new_group(list(range(i * rank.local_world_size, (i + 1) * rank.local_world_size)))
        if i == rank.rank // rank.local_world_size:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()


def _run(main_func, args):
    try:
        return main_func(*args)
    finally:
        dist.destroy_process_group()
