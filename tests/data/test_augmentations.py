"""RandomChoice: one of its augmentation sequences per image (the Swin / ConvNeXt recipes' multi-scale crops); ViTDet's
large-scale jitter."""

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


def test_vitdet_large_scale_jitter_crops_to_the_square_with_boxes_recomputed_from_the_masks():
    """configs/common/data/coco_lsj.py's training mapper (on the embedded dataset): every image fits in 1024x1024,
    scales vary over 0.1-2.0, and each box is its cropped mask's tight box (recompute_boxes; a cut box would keep
    its old extent otherwise)."""
    import os

    from cascade_det.data import ensure_embedded_split
    from cascade_det.engine import load_config

    from detectron2.config import instantiate
    from detectron2.data import DatasetCatalog

    from ..conftest import ROOT

    ensure_embedded_split("cascade_shapes_train")
    cfg = load_config(os.path.join(ROOT, "configs/common/data/coco_lsj.py"))
    mapper = instantiate(cfg.dataloader.train.mapper)
    assert [type(a).__name__ for a in mapper.augmentations.augs] == ["RandomFlip", "ResizeScale", "FixedSizeCrop"]
    np.random.seed(0)
    sizes = set()
    for record in DatasetCatalog.get("cascade_shapes_train")[:12]:
        out = mapper(dict(record))
        h, w = out["image"].shape[1:]
        assert h <= 1024 and w <= 1024
        sizes.add((h, w))
        instances = out["instances"]
        if len(instances):
            assert (instances.gt_boxes.tensor == instances.gt_masks.get_bounding_boxes().tensor).all()
    assert len(sizes) > 3 and max(max(s) for s in sizes) == 1024 and min(max(s) for s in sizes) < 1024
