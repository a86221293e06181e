"""`FrozenStatsBatchNorm2d`: batch norm whose running statistics stay frozen while its affine weight and bias train.

MMDetection's ResNet recipes (`norm_cfg=dict(type='BN', requires_grad=True), norm_eval=True`) train the BN scale and
shift of the unfrozen stages but keep every BN layer in eval mode, so it normalises with the ImageNet statistics.
Detectron2's `FrozenBatchNorm2d` freezes the affine parameters too; its "BN" updates the statistics. This is the
third kind. `freeze_at` still turns the frozen stages' layers into `FrozenBatchNorm2d`, as MMDetection's
`frozen_stages` freezes them.

In a LazyConfig: `norm=L(FrozenStatsBatchNorm2d.norm)()` where Detectron2 takes a norm ("BN", "FrozenBN" or a
callable channels -> module).
"""

from torch import nn
from torch.nn import functional as F

__all__ = ["FrozenStatsBatchNorm2d"]


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` that always normalises with its running statistics and never updates them, in training as
    at test time; weight and bias stay trainable parameters."""

    def forward(self, x):
        self._check_input_dim(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    @staticmethod
    def norm():
        """The class, as a LazyConfig `norm` argument: `norm=L(FrozenStatsBatchNorm2d.norm)()`."""
        return FrozenStatsBatchNorm2d
