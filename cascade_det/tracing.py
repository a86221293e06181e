"""What tracing our models needs, for our export and Detectron2's (`TracingAdapter`, `FlopCountAnalysis`) alike:
the modules whose `len()` calls must stay dynamic while tracing (`OUR_MODULES`), and `quiet_tracing`."""

import contextlib
import warnings

import torch

__all__ = ["OUR_MODULES", "quiet_tracing"]

# Modules of ours that call len() on tensors or Instances in the forward pass: Detectron2's `patch_builtin_len`
# takes them so that traced sizes stay dynamic.
OUR_MODULES = ("cascade_det.modeling.cascade_roi_heads", "cascade_det.modeling.box_predictor")


@contextlib.contextmanager
def quiet_tracing():
    """Tracing and exporting without warnings the user cannot act on: torch's deprecation notices for `torch.jit`
    (TorchScript still loads in C++ and in every torch 2 release), the tracer's warnings that Python values are
    recorded as constants (Detectron2's code is full of them; each export is checked numerically instead, on the
    sample and, in tests/test_export.py, at other sizes), the ONNX exporter's note on negative indices (ours
    index with class ids, never negative), and its notices that the TorchScript-based exporter is legacy."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.\w+. is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
        # The TorchScript-based ONNX exporter is chosen on purpose: torch.export cannot follow Detectron2's
        # data-dependent Python control flow. torch says it is deprecated, and so is its logging helper.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed", module=r"torch\.onnx")
        yield
