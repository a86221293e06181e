"""MMDetection itself (mmdet 3.3.0, mmengine, mmcv-lite: the test extra `bash .ci/env.sh` installs), as the
reference the converter is compared with.

mmcv-lite is MMCV without its compiled extension; MMDetection's inference needs two of its kernels, `nms` and
`roi_align_forward`, which this module provides as `mmcv._ext` from torchvision's implementations of the same
operations (same algorithms: greedy NMS at offset 0, RoIAlign with `aligned` and adaptive sampling). Every other
line that runs is MMDetection's and MMCV's own Python: its config files, model classes, data preprocessor,
anchor generator, box coder, RoI extractor, cascade test loop and post-processing.
"""

import os
import sys
import types

import torch
import torchvision


def _roi_align_forward(
    input,
    rois,
    output,
    argmax_y,
    argmax_x,
    aligned_height,
    aligned_width,
    spatial_scale,
    sampling_ratio,
    pool_mode,
    aligned,
):
    if pool_mode != 1:  # mmcv: 0 = max, 1 = avg
        raise NotImplementedError("only average RoIAlign is provided")
    output.copy_(
        torchvision.ops.roi_align(input, rois, (aligned_height, aligned_width), spatial_scale, sampling_ratio, aligned)
    )


def _nms(boxes, scores, iou_threshold, offset):
    if offset != 0:
        raise NotImplementedError("only offset 0 (MMDetection v2+) is provided")
    return torchvision.ops.nms(boxes, scores, iou_threshold)


def _install_kernels() -> None:
    kernels = {"roi_align_forward": _roi_align_forward, "nms": _nms}

    def missing(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def kernel(*args, **kwargs):
            raise NotImplementedError(f"mmcv kernel {name} is not provided by tests/mmdet_reference.py")

        return kernel

    ext = types.ModuleType("mmcv._ext")
    ext.__dict__.update(kernels)
    ext.__getattr__ = missing  # mmcv.ops checks at import that its other kernels exist
    sys.modules["mmcv._ext"] = ext


def build_cascade_rcnn(config_name: str = "cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py"):
    """MMDetection's detector built from its own config file (shipped in the mmdet wheel), in eval mode, with
    PyTorch's default initialisation (no pretrained backbone is loaded)."""
    _install_kernels()
    import mmdet
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules()
    cfg = Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", config_name))
    cfg.model.backbone.init_cfg = None
    return MODELS.build(cfg.model).eval()


def predict(model, image_bgr: torch.Tensor):
    """MMDetection's test step on one uint8 BGR image (3, H, W) that needs no resizing (H, W multiples of 32):
    its data preprocessor (BGR->RGB, mean/std, padding) and predict(). Returns its `pred_instances` (bboxes,
    scores, labels, and masks for a mask model) in the image's pixels."""
    from mmdet.structures import DetDataSample

    h, w = image_bgr.shape[1:]
    sample = DetDataSample(metainfo={"img_shape": (h, w), "ori_shape": (h, w), "scale_factor": (1.0, 1.0)})
    with torch.no_grad():
        return model.test_step({"inputs": [image_bgr], "data_samples": [sample]})[0].pred_instances
