"""Multi-process launch that also runs without CUDA.

Detectron2 0.6's `launch` asserts CUDA and always uses NCCL. Here, with CUDA present we defer to it; without,
`num_gpus_per_machine` processes run on the CPU and talk over gloo, so the distributed path (DDP, the sampler's
sharding, gathering evaluation results) runs and is tested on a CPU machine too.
"""

import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detectron2.engine import launch as d2_launch
from detectron2.engine.launch import DEFAULT_TIMEOUT, _find_free_port
from detectron2.utils import comm

__all__ = ["launch"]

logger = logging.getLogger(__name__)


def launch(
    main_func,
    num_gpus_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = None,
    args=(),
    timeout: timedelta = DEFAULT_TIMEOUT,
):
    """Same arguments as `detectron2.engine.launch`; on a machine without CUDA, `num_gpus_per_machine` is the
    number of CPU processes to start on this machine."""
    if torch.cuda.is_available():
        return d2_launch(main_func, num_gpus_per_machine, num_machines, machine_rank, dist_url, args, timeout)
    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT of machine 0")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    mp.spawn(
        _cpu_worker,
        nprocs=num_gpus_per_machine,
        args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args, timeout),
        daemon=False,
    )


def _cpu_worker(local_rank, main_func, world_size, procs_per_machine, machine_rank, dist_url, args, timeout):
    global_rank = machine_rank * procs_per_machine + local_rank
    dist.init_process_group(
        backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
    )
    # The processes share the machine's cores; without this each would start one thread per core.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // procs_per_machine))
    # Detectron2's comm.get_local_rank/size read the local group, as its own worker sets it.
    assert comm._LOCAL_PROCESS_GROUP is None
    for i in range(world_size // procs_per_machine):
        group = dist.new_group(list(range(i * procs_per_machine, (i + 1) * procs_per_machine)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    try:
        main_func(*args)
    finally:
        dist.destroy_process_group()
