"""Stop training when it diverges, before the diverged step is applied and before its weights are saved.

The loss of an iteration is checked before its optimizer step (inside Detectron2's `_write_metrics`, which runs
between backward and step): training stops with `TrainingDivergedError` when the total loss, averaged over the
processes, is

  * not finite (NaN or infinity), or
  * exploding: more than `factor` (train.loss_explosion_factor / SOLVER.LOSS_EXPLOSION_FACTOR, default 1e4) times the
    median total loss of the last 100 iterations (from the second iteration on; 0 disables this test).

Every process takes the same decision (they see the same averaged losses), so a multi-process run stops together.
A forward pass that fails while the weights are no longer finite is reported the same way. The error names the
iteration, the loss terms, the learning rate and the newest checkpoint written before the divergence began.
"""

import collections
import logging
import statistics
from typing import Callable, Dict, Optional

import torch

from detectron2.engine import AMPTrainer, SimpleTrainer
from detectron2.utils import comm

__all__ = ["GuardedAMPTrainer", "GuardedSimpleTrainer", "TrainingDivergedError", "weights_are_finite"]

logger = logging.getLogger("cascade_det")
HISTORY = 100


class TrainingDivergedError(FloatingPointError):
    """Training diverged; the message says where, with which losses and lr, and where to restart from."""


def weights_are_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.is_floating_point())


class _LossGuard:
    """The check, shared by the plain and the AMP trainer (mixed in before Detectron2's class)."""

    def setup_guard(self, factor: float, restart_hint: Callable[[int], str]):
        """`restart_hint(iteration)` says which checkpoint to restart from when iteration `iteration` diverged."""
        self.explosion_factor = float(factor)
        self.restart_hint = restart_hint
        self.loss_history = collections.deque(maxlen=HISTORY)

    def _write_metrics(self, loss_dict: Dict[str, torch.Tensor], data_time: float, *args, **kwargs):
        losses = {k: float(v.detach()) for k, v in loss_dict.items()}
        every_process = comm.all_gather(losses) if comm.get_world_size() > 1 else [losses]
        mean = {k: sum(p[k] for p in every_process) / len(every_process) for k in losses}
        total = sum(mean.values())
        reason = self._divergence(total)
        if reason:
            raise TrainingDivergedError(self._message(reason, mean, total))
        self.loss_history.append(total)
        return super()._write_metrics(loss_dict, data_time, *args, **kwargs)

    def _divergence(self, total: float) -> Optional[str]:
        if total != total or total in (float("inf"), float("-inf")):
            return "the loss is not finite"
        if self.explosion_factor > 0 and self.loss_history:
            median = statistics.median(self.loss_history)
            if median > 0 and total > self.explosion_factor * median:
                return (
                    f"the loss exploded: {total:.4g} > {self.explosion_factor:g} x the median of the last "
                    f"{len(self.loss_history)} iterations ({median:.4g})"
                )
        return None

    def _message(self, reason: str, losses: Dict[str, float], total: float) -> str:
        lr = self.optimizer.param_groups[0]["lr"]
        terms = ", ".join(f"{k}={v:.4g}" for k, v in sorted(losses.items()))
        return (
            f"Training diverged at iteration {self.iter}: {reason} (total {total:.4g}; {terms}); lr={lr:.4g}. "
            f"This step was not applied, and no checkpoint of its weights was written. {self.restart_hint(self.iter)}"
        )

    def state_dict(self):
        return {**super().state_dict(), "loss_history": list(self.loss_history)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.loss_history.clear()
        self.loss_history.extend(state.get("loss_history", []))

    def run_step(self):
        try:
            super().run_step()
        except TrainingDivergedError:
            raise
        except Exception as e:
            if weights_are_finite(self.model):
                raise
            raise TrainingDivergedError(
                f"Training diverged at iteration {self.iter}: the model's weights are no longer finite, and the "
                f"forward pass failed ({type(e).__name__}: {e}). {self.restart_hint(self.iter)}"
            ) from e


class GuardedSimpleTrainer(_LossGuard, SimpleTrainer):
    """Detectron2's SimpleTrainer with the divergence check."""


class GuardedAMPTrainer(_LossGuard, AMPTrainer):
    """Detectron2's AMPTrainer with the divergence check."""
