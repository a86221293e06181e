"""Training equals MMDetection's, step for step: the R50-FPN Cascade (Mask) R-CNN built from MMDetection 3.3.0's own
config file and ours built from configs/COCO/cascade_(mask_)rcnn_R_50_FPN_1x.py, with the same weights (MMDetection's,
through our converter) and the same batch (2 images with ground truth, no augmentation), give the same losses, the
same gradients for every parameter, and after one SGD step with the recipe's optimizer the same weights.

How randomness is removed (the two frameworks draw their samples differently):
  * RPN: both sample 256 anchors per image at 50% positive with `torch.randperm`, which the test replaces by
    `torch.arange` in both: each takes the first positives and negatives in anchor order, and both order anchors
    alike (level, y, x, anchor shape), so they pick the same anchors.
  * RoI heads: the RPN keeps 64 proposals per image after NMS in both (the recipe keeps 2000), so with the ground
    truth added every stage has fewer RoIs than the 512-RoI quota and fewer positives than its 25% share: every
    RoI is kept, in both frameworks, at every stage, and the losses do not depend on the order they come in.
  * Ground-truth boxes are well inside the images and apart from each other, so MMDetection's low-quality matching
    (its best anchor per box, among the anchors inside the image, if IoU >= 0.3) and Detectron2's (its best anchor
    per box) choose the same anchors.
Tolerances: losses within 1e-4 relative; each parameter's gradient within 1e-4 of the gradient's norm
(||g_ours - g_mmdet|| <= 1e-4 ||g_mmdet||); weights after the step within 1e-6.
"""

import os

import cv2
import mmdet_reference  # benchmarks/ (tests/conftest.py puts it on the path)
import numpy as np
import pytest
import torch
from mmdet_reference import LOSS_NAMES

from cascade_det.checkpoint import SafeDetectionCheckpointer
from cascade_det.convert import mmdet_to_detectron2
from cascade_det.engine import Run, load_config

from detectron2.config import instantiate
from detectron2.utils.events import EventStorage

from .conftest import ROOT

PROPOSALS = 64
PAIRS = {  # MMDetection's config -> ours
    "box": ("cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py", "configs/COCO/cascade_rcnn_R_50_FPN_1x.py"),
    "mask": ("cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py", "configs/COCO/cascade_mask_rcnn_R_50_FPN_1x.py"),
}
IMAGE = (128, 160)  # H, W: multiples of 32, so neither framework pads


def batch(border_box: bool):
    """2 noisy BGR images of coloured shapes, with 3 ground-truth boxes each (and their polygons as masks), and with
    `border_box` a fourth, about 17 x 35 px in the top-left corner, whose best anchor crosses the image border: the
    RPN's anchor assignment differs there between the frameworks unless ours follows MMDetection's
    (InsideAnchorsRPN; with Detectron2's RPN, loss_rpn_loc differs). The mask variant leaves it out: its RoIs' mask
    targets are equal in both frameworks, but the gradients of the last mask head then agree to 2e-4 only (float32
    sums over more RoIs), above this test's 1e-4."""
    rng = np.random.default_rng(3)
    h, w = IMAGE
    images, targets = [], []
    for i in range(2):
        image = np.empty((h, w, 3), np.uint8)
        image[:] = rng.integers(60, 200, 3)
        boxes = [[12 + 4 * i, 14, 58, 60], [76, 20 + 3 * i, 140, 70], [30, 78, 100, 118]]
        boxes += [[0, 0, 17 + 3 * i, 35]] if border_box else []
        classes = [int(c) for c in rng.integers(0, 80, len(boxes))]
        for x0, y0, x1, y1 in boxes:
            cv2.rectangle(image, (x0, y0), (x1, y1), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        # Pixel noise: in flat regions neighbouring anchors would get exactly equal scores, and the frameworks break
        # such ties differently (MMDetection sorts, Detectron2 takes top-k) when keeping the best proposals.
        image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
        images.append(image)
        targets.append((np.array(boxes, np.float32), np.array(classes)))
    return images, targets


def polygons(boxes):
    # A diamond inside each box: not the box itself, so that the mask targets are not trivial.
    return [[[(x0 + x1) / 2, y0, x1, (y0 + y1) / 2, (x0 + x1) / 2, y1, x0, (y0 + y1) / 2]] for x0, y0, x1, y1 in boxes]


@pytest.fixture
def first_k_sampling(monkeypatch):
    """torch.randperm -> torch.arange, in both frameworks (see the module docstring)."""
    monkeypatch.setattr(torch, "randperm", lambda n, *args, device=None, **kwargs: torch.arange(n, device=device))


def build_pair(kind, tmp_path):
    mmdet_config, our_config = PAIRS[kind]
    cfg = mmdet_reference.load_config(mmdet_config)
    cfg.model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=PROPOSALS)
    torch.manual_seed(0)
    reference = mmdet_reference.build_cascade_rcnn(cfg=cfg).train()
    path = str(tmp_path / f"{kind}.pth")
    torch.save({"state_dict": reference.state_dict()}, path)
    # train.reference_world_size=0: the recipe's lr (0.02, for 8 GPUs), not scaled to this one process.
    run = Run.of(
        load_config(
            os.path.join(ROOT, our_config),
            [
                "train.device=cpu",
                "train.reference_world_size=0",
                "model.proposal_generator.pre_nms_topk=[200,1000]",
                f"model.proposal_generator.post_nms_topk=[{PROPOSALS},1000]",
            ],
        )
    )
    ours = instantiate(run.cfg.model)
    checkpointer = SafeDetectionCheckpointer(ours)
    checkpointer.load(path)
    assert not checkpointer.last_load_report["missing"] and not checkpointer.last_load_report["incorrect_shapes"]
    return reference, ours.train(), run


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_one_training_step_equals_mmdetections(kind, tmp_path, first_k_sampling):
    reference, ours, run = build_pair(kind, tmp_path)
    images, targets = batch(border_box=kind != "mask")
    masks = [polygons(boxes) for boxes, _ in targets] if kind == "mask" else None

    mm_losses = mmdet_reference.training_losses(reference, images, targets, masks)
    with EventStorage():
        our_losses = ours(mmdet_reference.detectron2_inputs(images, targets, "RGB", masks))  # our COCO configs: RGB
    assert set(our_losses) == {k for k, v in LOSS_NAMES.items() if v in mm_losses}
    for ours_name, value in our_losses.items():
        expected = mm_losses[LOSS_NAMES[ours_name]].reshape(value.shape)  # MMDetection's mask loss has shape (1,)
        assert float(expected.detach()) > 0, ours_name  # a real comparison: every loss term is at work
        torch.testing.assert_close(value, expected, rtol=1e-4, atol=0, msg=ours_name)

    sum(mm_losses.values()).backward()
    sum(our_losses.values()).backward()
    mm_grads = mmdet_to_detectron2({n: p.grad for n, p in reference.named_parameters() if p.grad is not None})
    our_params = {n: p for n, p in ours.named_parameters() if p.requires_grad}
    assert set(our_params) == set(mm_grads)  # the same trainable parameters (BN scale and shift included)
    for name, p in our_params.items():
        expected = mm_grads[name]
        error = float((p.grad - expected).norm() / expected.norm().clamp(min=1e-12))
        assert error <= 1e-4, (name, error)

    # One step with the recipe's optimizer: SGD lr 0.02, momentum 0.9, weight decay 1e-4 on every parameter.
    from mmengine.optim import build_optim_wrapper

    mm_optimizer = build_optim_wrapper(reference, mmdet_reference.load_config(PAIRS[kind][0]).optim_wrapper)
    our_optimizer = run.build_optimizer(ours)
    mm_optimizer.step()
    our_optimizer.step()
    stepped = mmdet_to_detectron2({n: p.detach() for n, p in reference.named_parameters()})
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.detach(), stepped[name], rtol=0, atol=1e-6, msg=name)


ADAMW_STEPS = 4


def test_adamw_steps_of_the_end_to_end_network_equal_mmdetections(tmp_path, first_k_sampling):
    """The end-to-end comparison's network and recipe (benchmarks/mmdet_parity_end_to_end.py: R18-FPN of 64 channels
    whose BN trains on batch statistics, AdamW at lr 1e-3 with weight decay 0.05 except on norms, MMDetection's cascade
    recipe), built by MMDetection from `mmdet_config()` and by ours from its twin config, from one set of
    MMDetection-initialised weights: ADAMW_STEPS optimiser steps on one batch give the same losses at every step, and
    the same weights and BN running statistics after them. The SGD step above cannot show the norm layers' batch
    statistics, their weight-decay exemption or AdamW's moments; these steps do.

    Randomness removed: RPN anchors as above (first k); the R-CNN samplers' quota (100,000 RoIs, all allowed positive)
    is above the number of candidates at every stage, so both frameworks keep every RoI and neither samples."""
    from mmdet.registry import MODELS
    from mmdet_parity_end_to_end import OURS, mmdet_config
    from mmengine.optim import build_optim_wrapper

    keep_all = {"num": 100_000, "pos_fraction": 1.0}
    cfg = mmdet_config(str(tmp_path), 0, 600, None)
    for stage in cfg.model.train_cfg.rcnn:
        stage.sampler.update(keep_all)
    torch.manual_seed(0)
    reference = MODELS.build(cfg.model)
    reference.init_weights()
    path = str(tmp_path / "init.pth")
    torch.save({"state_dict": reference.state_dict()}, path)
    run = Run.of(
        load_config(
            OURS,
            [
                "train.device=cpu",
                f"model.roi_heads.batch_size_per_image={keep_all['num']}",
                f"model.roi_heads.positive_fraction={keep_all['pos_fraction']}",
            ],
        )
    )
    ours = instantiate(run.cfg.model)
    SafeDetectionCheckpointer(ours).load(path)
    reference.train()
    ours.train()
    mm_optimizer = build_optim_wrapper(reference, cfg.optim_wrapper).optimizer
    our_optimizer = run.build_optimizer(ours)

    images, targets = batch(border_box=True)
    targets = [(boxes, classes % 4) for boxes, classes in targets]  # the shapes network's 4 classes
    for step in range(ADAMW_STEPS):
        mm_losses = mmdet_reference.training_losses(reference, images, targets)
        with EventStorage():
            our_losses = ours(mmdet_reference.detectron2_inputs(images, targets, "BGR"))  # the shapes configs: BGR
        for ours_name, value in our_losses.items():
            torch.testing.assert_close(
                value, mm_losses[LOSS_NAMES[ours_name]], rtol=1e-4, atol=0, msg=f"step {step}: {ours_name}"
            )
        for optimizer, losses in ((mm_optimizer, mm_losses), (our_optimizer, our_losses)):
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
    # Weights and BN statistics after the steps: within 5e-3 of each tensor's norm. They agreed to 1e-5 on one host
    # and to 1.7e-3 on another (2026-12-02; the first ResNet stage only, where gradients are smallest and AdamW's
    # normalised step turns rounding differences of the convolutions' kernels into whole steps), so the weight-decay
    # exemption of the norms is checked exactly, on both optimisers' parameter groups, not through the weights.
    stepped = mmdet_to_detectron2(dict(reference.state_dict()))
    for name, value in ours.state_dict().items():
        if value.dtype.is_floating_point:
            error = float((value - stepped[name]).norm() / stepped[name].norm().clamp(min=1e-12))
            assert error <= 5e-3, (name, error)
    norm_types = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    for model, optimizer in ((ours, our_optimizer), (reference, mm_optimizer)):
        decay = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
        norms = {id(p) for m in model.modules() if isinstance(m, norm_types) for p in m.parameters(recurse=False)}
        assert norms, "no norm layer found"
        for name, parameter in model.named_parameters():
            if id(parameter) in norms:
                assert decay[id(parameter)] == 0.0, name  # the norms are exempt
            elif parameter.dim() > 1:
                assert decay[id(parameter)] == 0.05, name  # kernels decay


def test_learning_rate_schedule_equals_mmdetections():
    """Warm-up (linear from 0.001 over 500 iterations) and steps (x0.1 after epochs 8 and 11 of 7,330 iterations):
    MMDetection's param_scheduler of the recipe, as its runner builds it, against our lr multiplier."""
    import mmengine.optim  # noqa: F401  (registers its schedulers)
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = mmdet_reference.load_config(PAIRS["box"][0])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    epoch_length = 7330
    schedulers = []
    for scheduler in cfg.param_scheduler:  # as mmengine's runner builds them for an iteration-based loop
        kwargs = {k: v for k, v in scheduler.items() if k not in ("type", "by_epoch")}
        cls = PARAM_SCHEDULERS.get(scheduler["type"])
        if scheduler.get("by_epoch", True):
            schedulers.append(cls.build_iter_from_epoch(optimizer, **kwargs, epoch_length=epoch_length))
        else:
            schedulers.append(cls(optimizer, by_epoch=False, **kwargs))
    theirs = []
    for _ in range(12 * epoch_length):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        for s in schedulers:
            s.step()
    run = Run.of(load_config(os.path.join(ROOT, PAIRS["box"][1]), ["train.device=cpu", "train.reference_world_size=0"]))
    multiplier = instantiate(run.cfg.lr_multiplier)
    max_iter = run.settings.max_iter
    ours = [0.02 * multiplier(i / max_iter) for i in range(max_iter)]
    assert max_iter == len(theirs)
    checkpoints = [
        0,
        1,
        250,
        499,
        500,
        501,
        8 * epoch_length - 1,
        8 * epoch_length,
        11 * epoch_length - 1,
        11 * epoch_length,
        12 * epoch_length - 1,
    ]
    for i in checkpoints:
        assert ours[i] == pytest.approx(theirs[i], rel=1e-6), i
