"""MMDetection itself (mmdet 3.3.0, mmengine, mmcv-lite: the test extra `bash .ci/env.sh` installs), as the
reference the converter is compared with.

mmcv-lite is MMCV without its compiled extension; MMDetection needs three of its kernels, `nms`,
`roi_align_forward` and (for training) `roi_align_backward`, which this module provides as `mmcv._ext` from
torchvision's implementations of the same operations (same algorithms: greedy NMS at offset 0, RoIAlign with
`aligned` and adaptive sampling). Every other
line that runs is MMDetection's and MMCV's own Python: its config files, model classes, data preprocessor,
anchor generator, box coder, RoI extractor, cascade test loop and post-processing.
"""

import importlib.machinery
import os
import sys
import types

import torch
import torchvision


def _roi_align_geometry(aligned_height, aligned_width, spatial_scale, sampling_ratio, pool_mode, aligned):
    """The keyword arguments mmcv passes both RoIAlign kernels, as torchvision takes them."""
    if pool_mode != 1:  # mmcv: 0 = max, 1 = avg
        raise NotImplementedError("only average RoIAlign is provided")
    return aligned_height, aligned_width, spatial_scale, sampling_ratio, aligned


def _roi_align_forward(input, rois, output, _argmax_y, _argmax_x, **geometry):
    height, width, scale, sampling, aligned = _roi_align_geometry(**geometry)
    output.copy_(torchvision.ops.roi_align(input, rois, (height, width), scale, sampling, aligned))


def _roi_align_backward(grad_output, rois, _argmax_y, _argmax_x, grad_input, **geometry):
    height, width, scale, sampling, aligned = _roi_align_geometry(**geometry)
    n, c, h, w = grad_input.shape
    grad_input.copy_(
        torch.ops.torchvision._roi_align_backward(
            grad_output, rois, scale, height, width, n, c, h, w, sampling, aligned
        )
    )


def _nms(boxes, scores, iou_threshold, offset):
    if offset != 0:
        raise NotImplementedError("only offset 0 (MMDetection v2+) is provided")
    return torchvision.ops.nms(boxes, scores, iou_threshold)


def _install_kernels() -> None:
    kernels = {"roi_align_forward": _roi_align_forward, "roi_align_backward": _roi_align_backward, "nms": _nms}

    def missing(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def kernel(*args, **kwargs):
            raise NotImplementedError(f"mmcv kernel {name} is not provided by benchmarks/mmdet_reference.py")

        return kernel

    ext = types.ModuleType("mmcv._ext")
    ext.__spec__ = importlib.machinery.ModuleSpec("mmcv._ext", None)  # mmengine looks it up (mmcv_full_available)
    ext.__dict__.update(kernels)
    ext.__getattr__ = missing  # mmcv.ops checks at import that its other kernels exist
    sys.modules["mmcv._ext"] = ext


def max_iou_assigner(**kwargs):
    """MMDetection's own `MaxIoUAssigner` (its box assigner for anchors and RoIs) with these arguments."""
    _install_kernels()
    from mmdet.models.task_modules.assigners import MaxIoUAssigner

    return MaxIoUAssigner(**kwargs)


def load_config(config_name: str = "cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py"):
    """MMDetection's own config file (shipped in the mmdet wheel), as an mmengine Config."""
    _install_kernels()
    import mmdet
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    return Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", config_name))


def build_cascade_rcnn(config_name: str = "cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py", cfg=None):
    """MMDetection's detector built from its own config file (or `cfg`, such a config changed), in eval mode,
    initialised as MMDetection initialises it, without a pretrained backbone."""
    from mmdet.registry import MODELS

    cfg = cfg or load_config(config_name)
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()


def _data_sample(height: int, width: int):
    """MMDetection's per-image record of an image used at its own size (no resizing)."""
    from mmdet.structures import DetDataSample

    return DetDataSample(
        metainfo={"img_shape": (height, width), "ori_shape": (height, width), "scale_factor": (1.0, 1.0)}
    )


def predict(model, image_bgr: torch.Tensor):
    """MMDetection's test step on one uint8 BGR image (3, H, W) that needs no resizing (H, W multiples of 32):
    its data preprocessor (BGR->RGB, mean/std, padding) and predict(). Returns its `pred_instances` (bboxes,
    scores, labels, and masks for a mask model) in the image's pixels."""
    sample = _data_sample(*image_bgr.shape[1:])
    with torch.no_grad():
        return model.test_step({"inputs": [image_bgr], "data_samples": [sample]})[0].pred_instances


# A training batch, as both frameworks take it: `images` uint8 BGR (H, W, 3) arrays of sizes that need no resizing;
# `targets` per image (boxes (G, 4) XYXY float32, classes (G,) int); `masks` None, or per image one polygon list per
# box ([[x0, y0, x1, y1, ...], ...]).

# Our cascade's loss names -> MMDetection's (3 stages; the mask terms where each stage has its mask head).
LOSS_NAMES = {"loss_rpn_cls": "loss_rpn_cls", "loss_rpn_loc": "loss_rpn_bbox"}
for _t in range(3):
    LOSS_NAMES.update(
        {
            f"loss_cls_stage{_t}": f"s{_t}.loss_cls",
            f"loss_box_reg_stage{_t}": f"s{_t}.loss_bbox",
            f"loss_mask_stage{_t}": f"s{_t}.loss_mask",
        }
    )


def training_losses(model, images, targets, masks=None) -> dict:
    """MMDetection's training losses of `model` on the batch (its data preprocessor, then `loss`): the terms named
    "loss..." by MMDetection's names, each per-level list summed (as its runner sums them)."""
    import numpy as np
    from mmdet.structures.mask import PolygonMasks
    from mmengine.structures import InstanceData

    samples = []
    for i, (image, (boxes, classes)) in enumerate(zip(images, targets)):
        h, w = image.shape[:2]
        sample = _data_sample(h, w)
        gt = InstanceData(bboxes=torch.from_numpy(boxes), labels=torch.from_numpy(classes))
        if masks is not None:
            gt.masks = PolygonMasks([[np.array(p, np.float64) for p in obj] for obj in masks[i]], h, w)
        sample.gt_instances = gt
        samples.append(sample)
    chw = [torch.from_numpy(image).permute(2, 0, 1).contiguous() for image in images]
    data = model.data_preprocessor({"inputs": chw, "data_samples": samples}, training=True)
    losses = model.loss(data["inputs"], data["data_samples"])
    return {k: sum(v) if isinstance(v, (list, tuple)) else v for k, v in losses.items() if "loss" in k}


def detectron2_inputs(images, targets, input_format: str, masks=None) -> list:
    """The batch as a Detectron2 model's training inputs, its images in `input_format` ("RGB" or "BGR")."""
    from detectron2.structures import Boxes, Instances, PolygonMasks

    out = []
    for i, (image, (boxes, classes)) in enumerate(zip(images, targets)):
        h, w = image.shape[:2]
        instances = Instances((h, w), gt_boxes=Boxes(torch.from_numpy(boxes)), gt_classes=torch.from_numpy(classes))
        if masks is not None:
            instances.gt_masks = PolygonMasks(masks[i])
        pixels = image[:, :, ::-1].copy() if input_format == "RGB" else image
        out.append(
            {
                "image": torch.from_numpy(pixels).permute(2, 0, 1).contiguous(),
                "instances": instances,
                "height": h,
                "width": w,
            }
        )
    return out
