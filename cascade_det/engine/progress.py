"""Progress bars with an ETA for training and inference, when the output is a terminal.

Detectron2 logs training every `log_period` iterations and inference every 5 seconds; on a terminal that is a
long wait with no sign of life. With stderr a terminal (and in the main process only), training shows a tqdm bar
(iterations, rate, ETA, the latest total loss) and each inference a bar over its batches. Otherwise nothing changes:
log files, CI and `nohup` runs get the same log as before.
"""

import sys

from tqdm import tqdm

from detectron2.engine import HookBase
from detectron2.utils import comm

__all__ = ["TrainingProgress", "interactive", "with_progress"]


def interactive() -> bool:
    """Whether bars are shown: stderr is a terminal and this is the main process."""
    return bool(getattr(sys.stderr, "isatty", lambda: False)()) and comm.is_main_process()


class TrainingProgress(HookBase):
    """A bar over the training iterations (start_iter .. max_iter), with the latest total loss."""

    def before_train(self):
        self._bar = tqdm(
            total=self.trainer.max_iter,
            initial=self.trainer.start_iter,
            desc="training",
            unit="it",
            dynamic_ncols=True,
            leave=True,
        )

    def after_step(self):
        self._bar.update(1)
        latest = self.trainer.storage.latest()
        if "total_loss" in latest:
            self._bar.set_postfix(loss=f"{latest['total_loss'][0]:.3f}", refresh=False)

    def after_train(self):
        self._bar.close()


class _LoaderWithProgress:
    """An inference loader (iterable with a length) that advances a bar per batch."""

    def __init__(self, loader, desc: str):
        self.loader, self.desc = loader, desc

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        with tqdm(total=len(self.loader), desc=self.desc, unit="batch", dynamic_ncols=True, leave=False) as bar:
            for batch in self.loader:
                yield batch
                bar.update(1)


def with_progress(loader, desc: str):
    """`loader`, with a bar per pass when `interactive()`; `loader` itself otherwise."""
    return _LoaderWithProgress(loader, desc) if interactive() else loader
