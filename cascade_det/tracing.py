"""What tracing our models needs, for our export and Detectron2's (`TracingAdapter`, `tools/deploy/export_model.py`,
`FlopCountAnalysis`) alike: `dynamic_len`, the `len` of our modules' forward passes, and `quiet_tracing`."""

import contextlib
import warnings

import torch

__all__ = ["dynamic_len", "quiet_tracing"]


def dynamic_len(obj) -> int:
    """`len(obj)` through `obj.__len__()`: the same number in eager mode; while tracing, the length of a tensor (or of
    Instances, Boxes) stays a traced size instead of being recorded as a constant. Our modules that run in the
    forward pass (`modeling.cascade_roi_heads`, `modeling.box_predictor`) use it as their `len`, so that any tracer
    keeps their sizes dynamic: Detectron2's `patch_builtin_len`, which `TracingAdapter` applies, does the same for
    Detectron2's own modules only. Without it, a model traced on an image with fewer proposals than the RPN's
    post-NMS top-k fails on an image with more."""
    return obj.__len__()


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
