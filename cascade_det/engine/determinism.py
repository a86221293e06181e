"""What makes `--resume` continue bit-exactly: the random generators of every iteration follow from the run's seed.

`SeedEachIteration` seeds Python's, numpy's and torch's generators (CPU and CUDA) at the start of every iteration
from (seed, rank, iteration), so what an iteration draws (RoI sampling, dropout, ...) does not depend on what ran
before it: not on an evaluation, not on a restart. Together with the training loader's position
(`cascade_det.data.ResumableTrainLoader`), the optimizer, scheduler and model state Detectron2 already checkpoints,
a resumed run computes what the uninterrupted run computes. The seed is saved with the checkpoint, so a run started
without one (`train.seed` / `SEED` < 0: chosen at random, logged) resumes with the same seed.
"""

import logging
from typing import Optional

import numpy as np

from detectron2.engine import HookBase
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

__all__ = ["SeedEachIteration", "choose_seed"]

logger = logging.getLogger("cascade_det")


def choose_seed(seed: int) -> int:
    """The run's seed: `seed` when it is >= 0, else one drawn at random, the same on every process, and logged."""
    if seed >= 0:
        return int(seed)
    chosen = int(comm.shared_random_seed()) % 2**31
    logger.info(
        "No seed configured (train.seed / SEED < 0): this run's seed is %d (saved with its checkpoints; "
        "set it to repeat the run)",
        chosen,
    )
    return chosen


class SeedEachIteration(HookBase):
    """Seeds every generator at the start of each iteration from (seed, rank, iteration); its state is the seed,
    which it also gives the training loader (when that loader can be resumed) on resume."""

    def __init__(self, seed: int, data_loader=None):
        self.seed = seed
        self._data_loader = data_loader

    def before_step(self):
        state = np.random.SeedSequence([self.seed, comm.get_rank(), self.trainer.iter]).generate_state(1)[0]
        seed_all_rng(int(state) % 2**31)

    def state_dict(self):
        return {"seed": self.seed}

    def load_state_dict(self, state):
        seed: Optional[int] = state.get("seed")
        if seed is None:
            return
        if seed != self.seed:
            logger.info("Resuming with the checkpoint's seed %d (the config gives %d)", seed, self.seed)
        self.seed = int(seed)
        if self._data_loader is not None and hasattr(self._data_loader, "seed"):
            self._data_loader.seed = self.seed
