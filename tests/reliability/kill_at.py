"""train_net.py, killed with SIGKILL at the start of a given iteration (every process of the run kills itself there),
as a preempted cluster job is: no cleanup, no exception handling, files left as they are.

    python tests/reliability/kill_at.py ITERATION [train_net.py arguments]
"""

import os
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import train_net  # noqa: E402  (after the path, so that the launched processes import it too)
from cascade_det.engine import CascadeTrainer, argument_parser  # noqa: E402

from detectron2.engine import HookBase  # noqa: E402

KILL_AT = int(os.environ.get("CASCADE_DET_TEST_KILL_AT", "-1"))


class KillAt(HookBase):
    def before_step(self):
        if self.trainer.iter == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


_build_hooks = CascadeTrainer.build_hooks
CascadeTrainer.build_hooks = lambda self: [*_build_hooks(self), KillAt()]


def main(args):
    return train_net.main(args)


if __name__ == "__main__":
    os.environ["CASCADE_DET_TEST_KILL_AT"] = sys.argv[1]  # read again by spawned processes on import
    KILL_AT = int(sys.argv[1])
    args = argument_parser().parse_args(sys.argv[2:])
    train_net.launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
