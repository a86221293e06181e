"""A pytest plugin (`-p tests.detectron2_upstream.plugin`) under which Detectron2's own test files run against our
cascade heads. The adaptation is this file alone; the tests run unchanged:

* `detectron2.model_zoo.get(config, trained=True)` builds the config's model with `CascadeRCNNROIHeads` in place
  of its ROI heads (CASCADE_DET_UPSTREAM_HEADS; "CascadeROIHeads" runs Detectron2's own for comparison) and seeded
  random weights, whose classifiers are biased towards one class so that every stage detects (no model-zoo
  weights can be downloaded here);
* `detectron2.utils.testing.get_sample_coco_image()` is an image of the embedded shapes dataset at 480 x 640 (no
  COCO image can be downloaded here);
* `onnx.version.version`, which Detectron2's ONNX tests read at import and onnx >= 1.17 no longer has, is given
  back as `onnx.__version__`, and `torch.onnx.export` runs the TorchScript-based exporter these tests were written
  for (`dynamo=False`; torch >= 2.9 defaults to the dynamo exporter, which needs onnxscript and fails on
  Detectron2's built-in cascade as on ours).

Detectron2 marks its cascade export tests `skipIfOnCPUCI` (slow on CPUs); `tests/test_detectron2_upstream.py` runs
them with `CI` unset so that they run.
"""

import os
import types

import cv2
import numpy as np
import onnx
import torch

import cascade_det

from detectron2 import model_zoo
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.utils import testing

HEADS = os.environ.get("CASCADE_DET_UPSTREAM_HEADS", "CascadeRCNNROIHeads")


def model_with_our_heads(config_path, trained=False, device=None):
    cfg = cascade_det.add_cascade_config(model_zoo.get_config(config_path))
    cfg.MODEL.ROI_HEADS.NAME = HEADS
    # Detectron2's pooler: the tests compare eager and traced outputs to rtol 1e-5, and our FastROIPooler computes
    # eagerly what it defers to torchvision's RoIAlign for while tracing (equal to float rounding: 2e-3 px, 4e-5 in
    # score on this model); tests/test_detectron2_tracing.py traces FastROIPooler models with that tolerance.
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.FAST_ROI_ALIGN = False
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = device or "cpu"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    predictors = model.roi_heads.box_predictor
    for predictor in predictors if isinstance(predictors, torch.nn.ModuleList) else [predictors]:
        bias = predictor.cls_score.bias
        with torch.no_grad():  # class 0 first, background last: every region scores a foreground class
            bias.copy_(torch.linspace(6.0, -6.0, len(bias)))
    return model


def generated_sample_image(tensor=True):
    image = cv2.imread(DatasetCatalog.get("cascade_shapes_val")[0]["file_name"])
    image = cv2.resize(image, (640, 480), interpolation=cv2.INTER_LINEAR)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))) if tensor else image


if not hasattr(onnx, "version"):
    onnx.version = types.SimpleNamespace(version=onnx.__version__)
_export = torch.onnx.export


def torchscript_based_onnx_export(*args, **kwargs):
    kwargs.setdefault("dynamo", False)
    return _export(*args, **kwargs)


torch.onnx.export = torchscript_based_onnx_export
model_zoo.get = model_with_our_heads
testing.get_sample_coco_image = generated_sample_image
