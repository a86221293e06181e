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
            raise NotImplementedError(f"mmcv kernel {name} is not provided by tests/mmdet_reference.py")

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


def predict(model, image_bgr: torch.Tensor):
    """MMDetection's test step on one uint8 BGR image (3, H, W) that needs no resizing (H, W multiples of 32):
    its data preprocessor (BGR->RGB, mean/std, padding) and predict(). Returns its `pred_instances` (bboxes,
    scores, labels, and masks for a mask model) in the image's pixels."""
    from mmdet.structures import DetDataSample

    h, w = image_bgr.shape[1:]
    sample = DetDataSample(metainfo={"img_shape": (h, w), "ori_shape": (h, w), "scale_factor": (1.0, 1.0)})
    with torch.no_grad():
        return model.test_step({"inputs": [image_bgr], "data_samples": [sample]})[0].pred_instances
