"""What the hierarchical backbones (Swin, ConvNeXt) share as Detectron2 backbones: four stages at strides 4, 8, 16,
32 named p0..p3 (the names of Detectron2 main's own Swin backbone, so that its ViTDet-project configs can swap one
for another), a norm on each output (`norm0`..`norm3`, as in every detection version of these networks and their
checkpoints), frozen leading stages, and activation checkpointing."""

from typing import Callable, Dict, List, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone

from ...errors import ConfigValueError

__all__ = ["StagedBackbone"]

STAGE_NAMES = ("p0", "p1", "p2", "p3")
STAGE_STRIDES = (4, 8, 16, 32)


class StagedBackbone(Backbone):
    """Base of a 4-stage backbone. A subclass builds its stem and stages, then calls `_set_outputs`; its forward
    runs the stem and then `_run_stages`."""

    def __init__(
        self,
        out_features: Sequence[str],
        frozen_stages: int,
        use_checkpoint: bool,
        key: str,
        per_stage: Dict[str, Sequence],
    ):
        """`key` names the class in messages; `per_stage` holds the arguments given once per stage (4 each)."""
        super().__init__()
        wrong = {name: list(v) for name, v in per_stage.items() if len(v) != len(STAGE_NAMES)}
        if wrong:
            given = ", ".join(f"{name}={v}" for name, v in wrong.items())
            raise ConfigValueError(f"{key}({given}): expected {len(STAGE_NAMES)} stages each")
        unknown = [f for f in out_features if f not in STAGE_NAMES]
        if not out_features or unknown:
            raise ConfigValueError(
                f"{key}.out_features={list(out_features)}: expected a non-empty subset of {list(STAGE_NAMES)}"
            )
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= len(STAGE_NAMES):
            raise ConfigValueError(
                f"{key}.frozen_stages={frozen_stages!r}: expected -1 (nothing frozen), 0 (the stem) or 1-4 (the stem "
                "and that many stages)"
            )
        self._out_features = [f for f in STAGE_NAMES if f in out_features]
        self.frozen_stages = frozen_stages
        self.use_checkpoint = bool(use_checkpoint)

    def _set_outputs(self, stem: str, stages: str, channels: Sequence[int], norm: Callable[[int], nn.Module]) -> None:
        """Name the stem and the stages (attributes of the subclass: the module before the first stage, and the 4
        stages, each with the downsampling it begins with), declare each stage's channels, add `norm{i}` (built by
        `norm(channels)`) for the returned stages, drop the stages after the last returned one, and freeze what
        `frozen_stages` says."""
        self._stem_name, self._stages_name = stem, stages
        # Stages after the last returned one would be parameters without gradients (DistributedDataParallel refuses
        # them): not kept.
        last = max(STAGE_NAMES.index(f) for f in self._out_features)
        setattr(self, stages, getattr(self, stages)[: last + 1])
        self._out_feature_channels = {n: int(c) for n, c in zip(STAGE_NAMES, channels) if n in self._out_features}
        self._out_feature_strides = {n: s for n, s in zip(STAGE_NAMES, STAGE_STRIDES) if n in self._out_features}
        for i, name in enumerate(STAGE_NAMES):
            if name in self._out_features:
                self.add_module(f"norm{i}", norm(channels[i]))
        self._freeze()

    def _stem(self) -> nn.Module:
        return getattr(self, self._stem_name)

    def _stages(self) -> Sequence[nn.Module]:
        return getattr(self, self._stages_name)

    def _freeze(self) -> None:
        """No gradients for the frozen modules (called once built; `train()` keeps them in eval mode: drop path
        off)."""
        for module in self._frozen():
            for p in module.parameters():
                p.requires_grad_(False)

    def _frozen(self) -> List[nn.Module]:
        """What `frozen_stages` freezes: the stem for 0, also the first k stages (and their output norms)."""
        if self.frozen_stages < 0:
            return []
        modules = [self._stem()]
        for i in range(min(self.frozen_stages, len(self._stages()))):
            modules.append(self._stages()[i])
            if hasattr(self, f"norm{i}"):
                modules.append(getattr(self, f"norm{i}"))
        return modules

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self._frozen():
            module.eval()
        return self

    def _run_stages(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """x: the stem's output. Each stage: its downsampling, then its blocks (each recomputed in the backward pass
        instead of keeping its activations when `use_checkpoint` is on, in training: less memory, one more forward
        per block), and for the returned stages the output norm. Returns {name: (N, C, H, W)}."""
        outputs = {}
        for i, stage in enumerate(self._stages()):
            x = stage.downsample(x)
            args = self._stage_args(stage, x)
            for block in stage.blocks:
                block = self._block_function(block)
                if self.use_checkpoint and self.training and torch.is_grad_enabled():
                    x = checkpoint(block, x, *args, use_reentrant=False)
                else:
                    x = block(x, *args)
            if STAGE_NAMES[i] in self._out_features:
                out = getattr(self, f"norm{i}")(x)
                outputs[STAGE_NAMES[i]] = out.permute(0, 3, 1, 2).contiguous() if self.channels_last_blocks else out
        return outputs

    # What a subclass changes in `_run_stages`: whether its blocks take (N, H, W, C) maps, what runs a block, and
    # the further arguments every block of a stage gets (computed once per stage).
    channels_last_blocks = False

    def _block_function(self, block: nn.Module) -> Callable:
        return block

    def _stage_args(self, stage: nn.Module, x: torch.Tensor) -> tuple:
        return ()

    @property
    def size_divisibility(self) -> int:
        return STAGE_STRIDES[-1]

    def output_shape(self):
        return {
            n: ShapeSpec(channels=self._out_feature_channels[n], stride=self._out_feature_strides[n])
            for n in self._out_features
        }
