"""RandomChoice: one of its augmentation sequences per image (the Swin / ConvNeXt recipes' multi-scale crops)."""

import numpy as np
import pytest

from cascade_det.data import RandomChoice

import detectron2.data.transforms as T


def recipe_choice():
    multi_scale = T.ResizeShortestEdge(tuple(range(480, 801, 32)), max_size=1333, sample_style="choice")
    return RandomChoice(
        [
            [multi_scale],
            [
                T.ResizeShortestEdge((400, 500, 600), max_size=1333, sample_style="choice"),
                T.RandomCrop("absolute_range", (384, 600)),
                multi_scale,
            ],
        ]
    )


def test_each_sequence_is_drawn_and_applied_whole_with_its_boxes():
    np.random.seed(0)
    augmentation, cropped, plain = recipe_choice(), 0, 0
    for _ in range(40):
        image = np.zeros((480, 640, 3), np.uint8)
        box = np.array([[10.0, 10.0, 630.0, 470.0]])
        aug_input = T.AugInput(image, boxes=box.copy())
        transforms = augmentation(aug_input)
        names = [type(t).__name__ for t in transforms]
        short = min(aug_input.image.shape[:2])
        assert short in range(480, 801, 32)  # both sequences end with the multi-scale resize
        if "CropTransform" in names:
            cropped += 1
            assert names.count("ResizeTransform") == 2
        # The boxes went through the transforms the image went through (the mapper's annotations do too).
        np.testing.assert_allclose(aug_input.boxes, transforms.apply_box(box))
        if "CropTransform" not in names:
            plain += 1
            assert aug_input.image.shape[:2] in [(s, int(s * 4 / 3 + 0.5)) for s in range(480, 801, 32)]
    assert cropped > 5 and plain > 5


def test_probabilities_choose_the_sequence():
    np.random.seed(0)
    augmentation = RandomChoice([[T.RandomFlip(prob=1.0)], [T.RandomFlip(prob=0.0)]], [1.0, 0.0])
    for _ in range(10):
        image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
        aug_input = T.AugInput(image)
        augmentation(aug_input)
        assert (aug_input.image == image[:, ::-1]).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="choices"):
        RandomChoice([])
    with pytest.raises(ValueError, match="probabilities"):
        RandomChoice([[T.RandomFlip()]], [0.5, 0.5])
