"""Int8 deployment: static quantisation of the exported ONNX model with onnxruntime, calibrated on the user's images,
and the box AP of an exported model on a registered dataset (to compare the fp32 and int8 files).

    python -m cascade_det.export --config-file CFG --format onnx --output DIR --sample-image IMG \
        --weights model_final.pth --int8 --calibration DATASET_OR_FOLDER [--test-dataset NAME]

What it does: `model.onnx` (fp32) is written and checked as without `--int8`; then onnxruntime runs it on
`--calibration-images` images (a registered dataset's or a folder's, resized as the model's test resize, as the
Predictor feeds them), records the range of every input of its convolutions and matrix products (MinMax), and
writes `model_int8.onnx`: those operators in 8 bits (QDQ format: per-channel int8 weights, uint8 activations),
everything else (RoIAlign, box decoding, NMS) in float32. `reduce_range` (7-bit weights) where the CPU lacks VNNI
instructions, as onnxruntime advises, so its int8 products cannot saturate. The file carries the model's
description plus a "quantization" entry (method, calibration source and image count).

Why onnxruntime rather than OpenVINO: it is already the runtime of our ONNX files (one dependency, `[deploy]`),
and its int8 kernels run on any x86 CPU; README's Deploy section has the measured speed and accuracy.
"""

import json
import os
from typing import Callable, Dict, Iterable, List, Sequence

import numpy as np
import torch

from detectron2.data import DatasetCatalog
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances

from .errors import InputError
from .evaluation.coco_backend import load_gt
from .evaluation.per_stage import box_ap, contiguous_to_dataset_ids, detections_array, ground_truth_source
from .weights import MODEL_METADATA_KEY, atomic_write

__all__ = ["IMAGE_EXTENSIONS", "calibration_files", "calibration_tensors", "exported_box_ap", "quantize_onnx"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def calibration_files(source: str, limit: int) -> List[str]:
    """Up to `limit` image files of `source`: a folder (its images, sorted by name, not recursing) or a registered
    dataset name (its images in dataset order, spread evenly over it)."""
    if os.path.isdir(source):
        files = sorted(os.path.join(source, f) for f in os.listdir(source) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not files:
            raise InputError(f"--calibration {source}: the folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    elif source in DatasetCatalog.list():
        files = [d["file_name"] for d in DatasetCatalog.get(source)]
        if not files:
            raise InputError(f"--calibration {source}: the dataset has no images")
    else:
        raise InputError(
            f"--calibration {source} is neither a folder nor a registered dataset (registered: "
            f"{', '.join(sorted(DatasetCatalog.list())[:12])}, ...); give a folder of images like the ones the "
            "model will see, or a dataset name (--register-coco NAME JSON IMAGE_ROOT registers one)"
        )
    if len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return files


def calibration_tensors(files: Sequence[str], predictor) -> Iterable[np.ndarray]:
    """The model inputs (3, H, W) float32 of `files`, prepared as `predictor` prepares images (its test resize),
    one at a time."""
    for path in files:
        yield predictor._input(path, "BGR")["image"].float().numpy()


def _has_vnni() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


class _Reader:
    """onnxruntime's CalibrationDataReader over model inputs made one at a time (images are not held in memory)."""

    def __init__(self, tensors: Iterable[np.ndarray]):
        self._tensors = iter(tensors)

    def get_next(self):
        tensor = next(self._tensors, None)
        return None if tensor is None else {"image": tensor}


def quantize_onnx(
    fp32_path: str, int8_path: str, tensors: Iterable[np.ndarray], description: Dict, details: Dict
) -> str:
    """Write `int8_path`: `fp32_path` with its Conv / MatMul / Gemm in int8, calibrated (MinMax) on `tensors`
    (each a (3, H, W) float32 model input). The file carries `description` (the fp32 file's,
    `export.exported_metadata`) plus "quantization": how, and `details` (calibration source, image count)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reduce_range = not _has_vnni()
    tmp = int8_path + ".quantizing.onnx"
    prepared = int8_path + ".prepared.onnx"
    try:
        # onnxruntime's basic graph optimisations first: they fold the frozen BatchNorm (exported as Mul and Add
        # after each Conv) into the Conv, so that Conv + Relu becomes one int8 QLinearConv instead of an int8 input
        # dequantised in front of a float Conv (slower than fp32).
        quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared,
            tmp,
            _Reader(tensors),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,  # the calibration graph keeps each image's min and max only
        )
        graph = onnx.load(tmp)
    finally:
        for path in (tmp, prepared):
            if os.path.exists(path):
                os.remove(path)
    description = dict(description)
    description["quantization"] = {
        "method": "onnxruntime static, QDQ, MinMax calibration",
        "weights": "int8 per channel" + (", 7-bit range (no VNNI)" if reduce_range else ""),
        "activations": "uint8",
        "operators": ["Conv", "MatMul", "Gemm"],
        **details,
    }
    onnx.helper.set_model_props(graph, {MODEL_METADATA_KEY: json.dumps(description, indent=1)})
    with atomic_write(int8_path) as f:
        f.write(graph.SerializeToString())
    return int8_path


def exported_box_ap(runs: Dict[str, Callable], predictor, dataset_name: str) -> Dict[str, Dict]:
    """COCO box metrics (percent, `per_stage.box_ap`'s) on `dataset_name` of each exported model in `runs` (name ->
    the function `export.load_exported` returns), every image prepared as `predictor` prepares it (its test resize)
    and the boxes scaled back to the image, as Detectron2's postprocessing does: {name: {"AP": ..., "AP50": ...}}."""
    to_dataset_id = contiguous_to_dataset_ids(dataset_name)
    rows = {name: [] for name in runs}
    for d in DatasetCatalog.get(dataset_name):
        if not isinstance(d["image_id"], (int, np.integer)):
            raise InputError(f"--test-dataset {dataset_name}: image id {d['image_id']!r} is not an integer (COCO's)")
        inputs = predictor._input(d["file_name"], "BGR")
        image = inputs["image"].float()
        for name, run in runs.items():
            boxes, scores, classes = run(image)[:3]
            instances = Instances(tuple(image.shape[1:]))
            instances.pred_boxes = Boxes(torch.as_tensor(boxes))
            instances.scores = torch.as_tensor(scores)
            instances.pred_classes = torch.as_tensor(classes)
            instances = detector_postprocess(instances, inputs["height"], inputs["width"])
            rows[name].append(detections_array(instances, d["image_id"], to_dataset_id))
    gt = load_gt(ground_truth_source(dataset_name), "vectorized")
    return {name: box_ap(gt, np.concatenate(rows[name] or [np.zeros((0, 7))]), "vectorized") for name in runs}
