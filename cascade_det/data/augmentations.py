"""Augmentations Detectron2 lacks that the backbone recipes use."""

from typing import Optional, Sequence

import numpy as np

from detectron2.data import transforms as T

__all__ = ["RandomChoice"]


class RandomChoice(T.Augmentation):
    """One of several augmentation sequences, drawn per image (MMDetection's `RandomChoice` / AutoAugment
    policies): e.g. DETR's multi-scale training with crops, which the Swin and ConvNeXt detection recipes use:

        RandomChoice([[ResizeShortestEdge((480, ..., 800), max_size=1333, sample_style="choice")],
                      [ResizeShortestEdge((400, 500, 600), ...), RandomCrop("absolute_range", (384, 600)),
                       ResizeShortestEdge((480, ..., 800), ...)]])

    Args:
        choices: each a sequence of augmentations, applied in order when drawn.
        probabilities: of each choice (default uniform).
    """

    def __init__(self, choices: Sequence[Sequence[T.Augmentation]], probabilities: Optional[Sequence[float]] = None):
        super().__init__()
        if not choices:
            raise ValueError("RandomChoice(choices=[]): give at least one sequence of augmentations")
        if probabilities is not None and (len(probabilities) != len(choices) or abs(sum(probabilities) - 1) > 1e-6):
            raise ValueError(
                f"RandomChoice(probabilities={list(probabilities)}): expected {len(choices)} numbers summing to 1"
            )
        self.choices = [T.AugmentationList(list(c)) for c in choices]
        self.probabilities = None if probabilities is None else list(probabilities)

    def __call__(self, aug_input) -> T.Transform:
        index = np.random.choice(len(self.choices), p=self.probabilities)
        return self.choices[index](aug_input)

    def __repr__(self) -> str:
        return f"RandomChoice({self.choices})"
