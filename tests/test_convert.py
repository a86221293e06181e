"""MMDetection Cascade (Mask) R-CNN checkpoints convert to our model, which then predicts what MMDetection itself
predicts (MMDetection 3.3.0 runs in the test: see benchmarks/mmdet_reference.py)."""

import os

import cv2
import mmdet_reference  # benchmarks/ (tests/conftest.py puts it on the path)
import numpy as np
import pytest
import torch

import cascade_det  # noqa: F401
from cascade_det.checkpoint import SafeDetectionCheckpointer
from cascade_det.convert import DETECTRON2_CASCADE_WEIGHTS, MMDET_CASCADE_TARGET_STDS, main, mmdet_to_detectron2
from cascade_det.engine import load_config

from detectron2.config import instantiate

from .conftest import ROOT

PAIRS = {  # MMDetection's config (in the mmdet wheel) -> ours
    "box": ("cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py", "configs/COCO/cascade_rcnn_R_50_FPN_1x.py"),
    "mask": ("cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py", "configs/COCO/cascade_mask_rcnn_R_50_FPN_1x.py"),
}


def randomize_like_a_trained_model(model):
    """Random BN statistics and wide-spread heads, so that the random model makes confident, varied detections
    (80 classes at default init would all score below the 0.05 threshold)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if name.endswith("running_var"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.5 + 0.75)
            elif name.endswith("running_mean"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif any(f".{head}." in name for head in ("fc_cls", "fc_reg", "rpn_cls", "rpn_reg", "conv_logits")):
                p.copy_(torch.randn(p.shape, generator=g) * (0.05 if name.endswith("weight") else 2.0))


def shapes_image(h=320, w=416) -> np.ndarray:
    """A BGR uint8 image of coloured rectangles (sides multiples of 32: no resizing or padding on either side)."""
    rng = np.random.default_rng(0)
    image = np.empty((h, w, 3), np.uint8)
    image[:] = rng.integers(0, 255, 3)
    for _ in range(12):
        x, y, s = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 30)), int(rng.integers(20, 120))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(image, (x, y), (x + s, y + int(s * rng.uniform(0.5, 1.5))), color, -1)
    return image


def mmengine_checkpoint(model, path):
    """What MMDetection v3's runner saves: meta, state_dict, message_hub (mmengine HistoryBuffers), optimizer."""
    from mmengine.logging import MessageHub

    hub = MessageHub.get_instance("cascade_det_test")
    hub.update_scalar("train/loss", 1.25)
    torch.save(
        {
            "meta": {"epoch": 12, "iter": 87960, "dataset_meta": {"classes": ("person",)}},
            "state_dict": model.state_dict(),
            "message_hub": hub.state_dict(),
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.02}]},
        },
        path,
    )


@pytest.fixture(scope="module", params=sorted(PAIRS))
def converted_pair(request, tmp_path_factory):
    mmdet_config, our_config = PAIRS[request.param]
    torch.manual_seed(0)
    reference = mmdet_reference.build_cascade_rcnn(mmdet_config)
    randomize_like_a_trained_model(reference)
    path = str(tmp_path_factory.mktemp(request.param) / "epoch_12.pth")
    mmengine_checkpoint(reference, path)
    ours = instantiate(load_config(os.path.join(ROOT, our_config)).model).eval()
    checkpointer = SafeDetectionCheckpointer(ours)  # safe loading: the HistoryBuffers are never unpickled
    checkpointer.load(path)
    return request.param, reference, ours, checkpointer.last_load_report, path, our_config


def test_mmdetection_checkpoint_loads_directly_with_every_tensor_matched(converted_pair):
    _, _, ours, report, *_ = converted_pair
    assert not report["missing"] and not report["unexpected"] and not report["incorrect_shapes"]
    assert len(report["matched"]) == len([k for k in ours.state_dict() if not k.endswith("num_batches_tracked")])


def test_converted_model_predicts_what_mmdetection_predicts(converted_pair):
    """Same image (BGR for MMDetection as it loads images, RGB for our config's input_format): same 100 boxes,
    scores, classes, and for Cascade Mask R-CNN the same masks."""
    kind, reference, ours, *_ = converted_pair
    image = shapes_image()
    with torch.no_grad():
        expected = mmdet_reference.predict(reference, torch.from_numpy(image).permute(2, 0, 1).contiguous())
        rgb = torch.from_numpy(image[:, :, ::-1].copy()).permute(2, 0, 1)
        got = ours([{"image": rgb, "height": image.shape[0], "width": image.shape[1]}])[0]["instances"]
    assert len(expected.bboxes) == 100 and len(got) == 100
    torch.testing.assert_close(got.pred_boxes.tensor, expected.bboxes, rtol=0, atol=1e-3)
    torch.testing.assert_close(got.scores, expected.scores, rtol=0, atol=1e-5)
    assert torch.equal(got.pred_classes, expected.labels)
    assert len(set(got.pred_classes.tolist())) > 1
    if kind == "mask":
        assert expected.masks.any()
        assert (got.pred_masks != expected.masks.bool()).float().mean() < 1e-4


def test_convert_command_writes_the_weights_direct_loading_uses(converted_pair, tmp_path):
    _, _, ours, _, path, our_config = converted_pair
    out = str(tmp_path / "converted.safetensors")
    main(["mmdet", path, out])
    fresh = instantiate(load_config(os.path.join(ROOT, our_config)).model)
    SafeDetectionCheckpointer(fresh).load(out)
    for (name, a), b in zip(ours.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(SystemExit):  # never overwrites
        main(["mmdet", path, out])


def test_box_coder_stds_become_detectron2_weights_per_class():
    """fc_reg rows are multiplied by std * weight, class by class: 1/0.033 is not 30, so for Detectron2's weights
    this is not a no-op; for our recipe configs' weights (1/std, the default) it is."""
    d = 16
    weights = {f"roi_head.bbox_head.{t}.fc_reg.weight": torch.ones(8, d) for t in range(3)}
    weights.update({f"roi_head.bbox_head.{t}.fc_reg.bias": torch.ones(8) for t in range(3)})
    unchanged = mmdet_to_detectron2(weights)
    torch.testing.assert_close(unchanged["roi_heads.box_predictor.2.bbox_pred.weight"], torch.ones(8, d))
    out = mmdet_to_detectron2(weights, bbox_reg_weights=DETECTRON2_CASCADE_WEIGHTS)
    stage2 = out["roi_heads.box_predictor.2.bbox_pred.weight"][:, 0]
    expected = torch.tensor([0.033 * 30, 0.033 * 30, 0.067 * 15, 0.067 * 15] * 2)
    torch.testing.assert_close(stage2, expected)
    torch.testing.assert_close(out["roi_heads.box_predictor.0.bbox_pred.bias"], torch.ones(8))  # 0.1*10, 0.2*5
    assert len(MMDET_CASCADE_TARGET_STDS) == 3


def test_unknown_mmdetection_parameter_is_named_not_dropped():
    with pytest.raises(KeyError, match="roi_head.bbox_head.0.reg_convs.0.conv.weight"):
        mmdet_to_detectron2({"roi_head.bbox_head.0.reg_convs.0.conv.weight": torch.zeros(1)})


def test_stage_count_mismatch_is_an_error_naming_both_counts():
    weights = {
        f"roi_head.bbox_head.{t}.fc_reg.{p}": torch.zeros(4, 2)[:, 0] if p == "bias" else torch.zeros(4, 2)
        for t in range(2)
        for p in ("weight", "bias")
    }
    with pytest.raises(ValueError, match="2 cascade stages, but 3 target_stds"):
        mmdet_to_detectron2(weights)


def test_convert_command_refuses_a_checkpoint_that_is_not_mmdetection(tmp_path):
    path = str(tmp_path / "model_final.pth")
    torch.save({"model": {"backbone.bottom_up.stem.conv1.weight": torch.zeros(1)}}, path)
    with pytest.raises(SystemExit):
        main(["mmdet", path, str(tmp_path / "out.safetensors")])
    assert not (tmp_path / "out.safetensors").exists()
