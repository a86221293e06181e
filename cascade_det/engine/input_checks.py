"""Checks of what a built model will be fed, against what it can take.

A backbone that pads every image to a fixed square (ViTDet's simple feature pyramid, `square_pad`: Detectron2 main's
`padding_constraints["square_size"]`) cannot take a larger image: Detectron2's `ImageList` then pads by a negative
amount, which crops the image without a word, and detections beyond the square are lost. The config's resizes say
how large the images can get; a run whose training or test resize allows more than the square is refused before
it starts, naming both keys (the message is `check_sides_fit_the_square`'s, which the yacs ViTDet builder also
applies to INPUT.MAX_SIZE_*, for Detectron2's own DefaultPredictor and DefaultTrainer).
"""

from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import detectron2.data.transforms as T

from ..modeling.backbones.vit import check_sides_fit_the_square

__all__ = ["check_images_fit_the_square", "largest_side"]


def largest_side(augmentations: Iterable[T.Augmentation]) -> Optional[float]:
    """The longest side (pixels) an image can have after `augmentations`, or None where they do not bound it (no
    resize, or one of unknown effect after the last bounding one)."""
    side = None
    for aug in augmentations:
        if isinstance(aug, T.ResizeShortestEdge):
            side = float(aug.max_size) if aug.max_size and aug.max_size > 0 else None
        elif isinstance(aug, T.ResizeScale):
            side = float(aug.max_scale) * max(aug.target_height, aug.target_width)
        elif isinstance(aug, T.Resize):
            side = float(max(aug.shape))
        elif isinstance(aug, T.FixedSizeCrop):
            crop = float(max(aug.crop_size))
            side = crop if side is None else min(side, crop)
        elif isinstance(aug, (T.RandomFlip, T.RandomBrightness, T.RandomContrast, T.RandomSaturation)):
            continue  # sizes unchanged
        elif isinstance(aug, T.RandomCrop) and side is not None:
            continue  # a crop only shrinks
        else:
            side = None  # of unknown effect
    return side


def check_images_fit_the_square(model, square_key: str, sources: Sequence[Tuple[str, str, Callable[[], List]]]) -> None:
    """Refuse a run whose images can be larger than the square `model`'s backbone pads them to (see above; a
    backbone without one is left alone). `sources`: (what the images are, e.g. "test", the config key of their
    resize, a function giving the augmentations), each asked only for a backbone with a square."""
    constraints = getattr(getattr(model, "backbone", None), "padding_constraints", None) or {}
    square = constraints.get("square_size", 0)
    if not square:
        return
    check_sides_fit_the_square(
        square, square_key, ((what, key, largest_side(augmentations_of())) for what, key, augmentations_of in sources)
    )
