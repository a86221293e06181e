"""Stop training when it diverges, before the diverged step is applied and before its weights are saved.

The loss of an iteration is checked as soon as the model's forward pass returns it, before its backward pass and
optimizer step (a forward hook on the trained model, active inside `run_step` only): training stops with
`TrainingDivergedError` when the total loss, averaged over the processes, is

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

from ..checkpoint import non_finite_tensors
from ..errors import Error

__all__ = ["GuardedAMPTrainer", "GuardedSimpleTrainer", "TrainingDivergedError", "weights_are_finite"]

logger = logging.getLogger("cascade_det")
HISTORY = 100


class TrainingDivergedError(Error, FloatingPointError):
    """Training diverged; the message says where, with which losses and lr, and where to restart from."""


def weights_are_finite(model: torch.nn.Module) -> bool:
    return not non_finite_tensors(dict(model.named_parameters()))


class _LossGuard:
    """The check, shared by the plain and the AMP trainer (mixed in before Detectron2's class). It uses public seams
    only: a forward hook on the model (which returns the loss dict in training) and `run_step`."""

    def setup_guard(self, factor: float, restart_hint: Callable[[int], str]):
        """`restart_hint(iteration)` says which checkpoint to restart from when iteration `iteration` diverged."""
        self.explosion_factor = float(factor)
        self.restart_hint = restart_hint
        self.loss_history = collections.deque(maxlen=HISTORY)
        self._in_step = False
        self.model.register_forward_hook(self._check_losses)

    def _check_losses(self, module, inputs, loss_dict) -> None:
        """Forward hook: the losses of the step being run (not of PreciseBN's or an evaluation's forward passes)."""
        if not (self._in_step and isinstance(loss_dict, dict)):
            return
        losses = {k: float(v.detach()) for k, v in loss_dict.items()}
        every_process = comm.all_gather(losses) if comm.get_world_size() > 1 else [losses]
        mean = {k: sum(p[k] for p in every_process) / len(every_process) for k in losses}
        total = sum(mean.values())
        reason = self._divergence(total)
        if reason:
            raise TrainingDivergedError(self._message(reason, mean, total))
        self.loss_history.append(total)

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
        self._in_step = True
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
        finally:
            self._in_step = False


class GuardedSimpleTrainer(_LossGuard, SimpleTrainer):
    """Detectron2's SimpleTrainer with the divergence check."""


class GuardedAMPTrainer(_LossGuard, AMPTrainer):
    """Detectron2's AMPTrainer with the divergence check."""
