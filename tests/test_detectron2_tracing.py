"""Detectron2's own tracing export (`detectron2.export.TracingAdapter`, what `tools/deploy/export_model.py
--export-method tracing` and Detectron2's `TestTracing` use) on our cascades: a model traced on a small image, whose
RPN passes fewer proposals than its post-NMS top-k, gives the eager model's detections on larger images, where the
RPN passes exactly the top-k. Nothing of ours is passed to the tracer: `import cascade_det` is all."""

import os

import cv2
import pytest
import torch

from cascade_det.engine import load_config
from cascade_det.tracing import quiet_tracing

from detectron2.config import instantiate
from detectron2.export import TracingAdapter

from .conftest import QUICKSTART, ROOT, small_cascade_mask_model

TOPK = (
    1000  # the RPN's post-NMS top-k at test time, as in the COCO configs (an untrained RPN fills the quickstart's 150)
)


def quickstart_model(weights):
    overrides = [
        "model.proposal_generator.pre_nms_topk=[600,1000]",
        f"model.proposal_generator.post_nms_topk=[300,{TOPK}]",
    ]
    model = instantiate(load_config(os.path.join(ROOT, QUICKSTART), ["train.device=cpu", *overrides]).model)
    model.load_state_dict(torch.load(weights)["model"])
    return model.eval()


def detections(model, image):
    """Detectron2's TestTracing inference: the model's Instances before post-processing."""
    return model.inference([{"image": image}], do_postprocess=False)[0]


def image_of_size(path, size):
    return torch.as_tensor(cv2.resize(cv2.imread(path), size).transpose(2, 0, 1).copy()).float()


def proposal_count(model, image):
    with torch.no_grad():
        images = model.preprocess_image([{"image": image}])
        proposals, _ = model.proposal_generator(images, model.backbone(images.tensor))
    return len(proposals[0])


@pytest.fixture(scope="module")
def traced_quickstart(quickstart_weights, shapes_image):
    """The quickstart model traced once by TracingAdapter on a 64 x 64 image (fewer proposals than the top-k)."""
    model = quickstart_model(quickstart_weights)
    small = image_of_size(shapes_image, (64, 64))
    assert proposal_count(model, small) < TOPK
    adapter = TracingAdapter(model, (small,), detections).eval()  # as Detectron2's tests: exporters restore its mode
    with torch.no_grad(), quiet_tracing():
        return model, adapter, torch.jit.trace(adapter, (small,), check_trace=False)


def assert_same(adapter, traced, model, image, masks=False):
    with torch.no_grad(), quiet_tracing():
        want = detections(model, image)
        got = adapter.outputs_schema(traced(image))
    assert len(want) > 0 and len(got) == len(want)
    torch.testing.assert_close(got.pred_boxes.tensor, want.pred_boxes.tensor, atol=1e-3, rtol=0)
    torch.testing.assert_close(got.scores, want.scores, atol=1e-5, rtol=0)
    assert torch.equal(got.pred_classes, want.pred_classes)
    if masks:
        torch.testing.assert_close(got.pred_masks, want.pred_masks, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(256, 256), (200, 131)])
def test_a_box_cascade_traced_by_detectron2_runs_at_other_sizes_and_proposal_counts(
    traced_quickstart, shapes_image, size
):
    model, adapter, traced = traced_quickstart
    image = image_of_size(shapes_image, size)
    assert proposal_count(model, image) == TOPK  # the case a constant proposal count in our heads broke
    assert_same(adapter, traced, model, image)


def test_a_mask_cascade_traced_by_detectron2_runs_at_another_size(shapes_image):
    model = small_cascade_mask_model()
    small, large = image_of_size(shapes_image, (64, 64)), image_of_size(shapes_image, (256, 192))
    adapter = TracingAdapter(model, (small,), detections)
    with torch.no_grad(), quiet_tracing():
        traced = torch.jit.trace(adapter, (small,), check_trace=False)
    assert_same(adapter, traced, model, large, masks=True)


def test_the_tracing_adapter_exports_to_onnx_that_runs_at_other_sizes(traced_quickstart, shapes_image, tmp_path):
    """The same adapter through torch.onnx.export (the TorchScript-based exporter, with the image's height and width
    dynamic), run by onnxruntime at the RPN's full top-k: the eager detections."""
    import onnxruntime

    model, adapter, _ = traced_quickstart
    small = image_of_size(shapes_image, (64, 64))
    path = str(tmp_path / "model.onnx")
    with torch.no_grad(), quiet_tracing():
        torch.onnx.export(
            adapter,
            (small,),
            path,
            opset_version=16,
            input_names=["image"],
            dynamic_axes={"image": {1: "height", 2: "width"}},
            dynamo=False,
        )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    image = image_of_size(shapes_image, (256, 256))
    assert proposal_count(model, image) == TOPK
    outputs = session.run(None, {"image": image.numpy()})
    with torch.no_grad():
        got = adapter.outputs_schema(tuple(torch.from_numpy(o) for o in outputs))
        want = detections(model, image)
    assert len(got) == len(want) > 0
    torch.testing.assert_close(got.pred_boxes.tensor, want.pred_boxes.tensor, atol=1e-2, rtol=0)
    torch.testing.assert_close(got.scores, want.scores, atol=1e-4, rtol=0)
