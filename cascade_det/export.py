"""Export a trained model to TorchScript or ONNX, for images of any size.

    python -m cascade_det.export --config-file CFG --format torchscript --output DIR --sample-image IMG \
        train.init_checkpoint=model_final.pth
    python -m cascade_det.export --config-file CFG --format onnx --output DIR --sample-image IMG [overrides]

The exported model (`model.ts` / `model.onnx`) takes ONE image: a float32 tensor (3, H, W) in the model's input
format (BGR or RGB, 0..255), at any H x W; it normalises inside. Resizing stays outside, as in Detectron2 (resize to
the config's test size first, and scale the boxes back). It returns, in this order: boxes (R, 4) XYXY in the given
image's pixels, scores (R,), classes (R,) and, for a mask model, masks (R, 1, M, M) (probabilities in the box, as
Detectron2's mask head predicts them). The command loads the file back, runs it on the sample image and prints the
largest differences from the eager model (boxes within 0.05 px and scores within 1e-3, or it fails).

The file says what the model is: `exported_metadata(path)` (or, for ONNX, `onnx.load(path).metadata_props`, key
"cascade_det_model"; for TorchScript, the sidecar `model.ts.json`) gives the class names, `num_classes`, the input
format and the test resize. To get the Predictor's detections from the file, preprocess as it does:

    import cv2, json, numpy as np, onnx, onnxruntime
    meta = json.loads({p.key: p.value for p in onnx.load("model.onnx").metadata_props}["cascade_det_model"])
    image = cv2.imread("photo.jpg")                                    # BGR; [:, :, ::-1] if input_format is RGB
    h, w = image.shape[:2]
    short, longest = meta["test_resize"]["short_edge_length"], meta["test_resize"]["max_size"]
    scale = min(short / min(h, w), longest / max(h, w))                # Detectron2's ResizeShortestEdge
    resized = cv2.resize(image, (int(w * scale + 0.5), int(h * scale + 0.5)), interpolation=cv2.INTER_LINEAR)
    # (Detectron2 resizes with PIL's bilinear filter: its pixels differ from OpenCV's by rounding)
    tensor = resized.transpose(2, 0, 1).astype(np.float32)             # (3, H, W), 0..255
    boxes, scores, classes = onnxruntime.InferenceSession("model.onnx").run(None, {"image": tensor})[:3]
    boxes /= scale                                                     # back to the photo's pixels
    names = [meta["thing_classes"][c] for c in classes]

How it exports what Detectron2 lists as "tracing only" for Cascade R-CNN: the model is traced with Detectron2's
`patch_builtin_len` (sizes stay dynamic; our modules keep theirs dynamic with `tracing.dynamic_len`), our pooler
defers to torchvision's RoIAlign while tracing (an exportable op), and the cascade's gradient scaling exists only in
training.
"""

import importlib.util
import io
import json
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.export.torchscript_patch import patch_builtin_len

from .engine.args import config_tool_parser, positive_int, register_datasets, tool_logging
from .errors import exit_on_user_error
from .modeling.speed import plain_convolutions
from .outputs import check_writable
from .quantize import calibration_files, calibration_tensors, exported_box_ap, quantize_onnx
from .tracing import quiet_tracing
from .weights import MODEL_METADATA_KEY, atomic_write

__all__ = ["ExportableDetector", "compare", "export", "exported_metadata", "load_exported", "main"]

logger = logging.getLogger(__name__)
TOLERANCE = {"boxes": 0.05, "scores": 1e-3}
INT8_FILE = "model_int8.onnx"
OVERLAP_IOU = 0.9  # an int8 detection "is" an fp32 one: same class, IoU at least this
TORCHSCRIPT_METADATA = "cascade_det_model.json"  # the extra file inside model.ts


class ExportableDetector(nn.Module):
    """A Detectron2 R-CNN as a function of one image tensor (3, H, W) to (boxes, scores, classes[, masks])."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        # The wrapper itself in eval mode too: the ONNX exporter puts the wrapper back in the mode it found it in,
        # which for a new module would be training mode, for the model inside as well.
        self.eval()
        self.masks = bool(getattr(model.roi_heads, "mask_on", False))

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        with patch_builtin_len():  # Detectron2's modules; ours keep their sizes dynamic themselves (dynamic_len)
            (instances,) = self.model.inference([{"image": image}], do_postprocess=False)
        out = (instances.pred_boxes.tensor, instances.scores, instances.pred_classes)
        return out + (instances.pred_masks,) if self.masks else out


def export(model: nn.Module, sample: torch.Tensor, fmt: str, folder: str, metadata: Optional[Dict] = None) -> str:
    """Write `model` (eval mode, on the CPU) traced on `sample` as `folder/model.ts` or `folder/model.onnx`, with
    the model's `metadata` (class names, input format, test resize, outputs): in the ONNX file's `metadata_props`
    under MODEL_METADATA_KEY; for TorchScript inside the file (an extra file `cascade_det_model.json`) and beside
    it (`model.ts.json`). `exported_metadata(path)` reads it back."""
    wrapper = ExportableDetector(model)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.ts" if fmt == "torchscript" else "model.onnx")
    names = ["boxes", "scores", "classes"] + (["masks"] if wrapper.masks else [])
    text = json.dumps({**(metadata or {}), "inputs": ["image"], "outputs": names}, indent=1)
    with torch.no_grad(), quiet_tracing():
        if fmt == "torchscript":
            traced = torch.jit.trace(wrapper, (sample,), check_trace=False)
            with atomic_write(path) as f:
                torch.jit.save(traced, f, _extra_files={TORCHSCRIPT_METADATA: text})
            with atomic_write(path + ".json", text=True) as f:
                f.write(text + "\n")
            return path
        import onnx

        buffer = io.BytesIO()
        torch.onnx.export(
            wrapper,
            (sample,),
            buffer,
            opset_version=16,
            input_names=["image"],
            output_names=names,
            dynamic_axes={"image": {1: "height", 2: "width"}, **{n: {0: "detections"} for n in names}},
            dynamo=False,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, {MODEL_METADATA_KEY: text})
    with atomic_write(path) as f:
        f.write(graph.SerializeToString())
    return path


def exported_metadata(path: str) -> Dict:
    """The model description an exported file carries (see `export`); {} if it has none."""
    if path.endswith(".ts"):
        files = {TORCHSCRIPT_METADATA: ""}
        with quiet_tracing():
            torch.jit.load(path, _extra_files=files)
        return json.loads(files[TORCHSCRIPT_METADATA] or "{}")
    import onnx

    props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    return json.loads(props.get(MODEL_METADATA_KEY, "{}"))


def load_exported(path: str, threads: int = 0):
    """The exported file as a function of one image tensor, returning numpy arrays. `threads`: onnxruntime's
    intra-op threads (0: its default)."""
    if path.endswith(".ts"):
        with quiet_tracing():
            module = torch.jit.load(path)

        def run(image: torch.Tensor):
            with torch.no_grad():
                return [t.numpy() for t in module(image)]

        return run
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(image: torch.Tensor):
        return session.run(None, {"image": image.numpy()})

    return run


def compare(model: nn.Module, exported, image: torch.Tensor) -> dict:
    """Largest differences between the exported model's detections on `image` and the eager model's: boxes (px),
    scores and masks, between detections paired one to one (same class, nearest box). Pairing rather than comparing
    row by row: two detections whose scores tie to float precision may come out in either order. A different
    number of detections, or one that has no partner of its class, makes the differences infinite."""
    with torch.no_grad(), quiet_tracing():
        expected = [t.numpy() for t in ExportableDetector(model)(image)]
    got = exported(image)
    diff = {"detections": len(expected[0])}
    if len(got[0]) != len(expected[0]):
        return {"detections": (len(expected[0]), len(got[0])), "boxes": float("inf"), "scores": float("inf")}
    # cost: the largest coordinate difference of two boxes; pairs of different classes are ruled out
    cost = np.abs(got[0][:, None, :] - expected[0][None, :, :]).max(axis=2)
    cost[got[2][:, None] != expected[2][None, :]] = np.inf
    rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e12))
    if not np.isfinite(cost[rows, cols]).all():
        return {"detections": diff["detections"], "boxes": float("inf"), "scores": float("inf")}
    diff["boxes"] = float(cost[rows, cols].max(initial=0.0))
    diff["scores"] = float(np.abs(got[1][rows] - expected[1][cols]).max(initial=0.0))
    if len(got) > 3:
        diff["masks"] = float(np.abs(got[3][rows] - expected[3][cols]).max(initial=0.0))
    return diff


def detection_overlap(reference, other, image: torch.Tensor, iou: float = OVERLAP_IOU) -> dict:
    """How many of `reference`'s detections on `image` `other` also makes (same class, IoU >= `iou`, matched one to
    one): {"reference": N, "other": M, "matched": K}. For a quantised model, whose boxes and scores move a little."""
    from torchvision.ops import box_iou

    ref, got = reference(image), other(image)
    overlaps = box_iou(torch.as_tensor(ref[0]), torch.as_tensor(got[0])).numpy()
    overlaps[ref[2][:, None] != got[2][None, :]] = 0
    if overlaps.size:
        rows, cols = linear_sum_assignment(-overlaps)
        matched = int((overlaps[rows, cols] >= iou).sum())
    else:
        matched = 0
    return {"reference": len(ref[0]), "other": len(got[0]), "matched": matched}


def within_tolerance(diff: dict) -> bool:
    return diff["boxes"] <= TOLERANCE["boxes"] and diff["scores"] <= TOLERANCE["scores"]


def image_tensor(path: str, input_format: str) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(utils.read_image(path, format=input_format).transpose(2, 0, 1))).float()


def main(argv: Sequence[str] = None) -> List[str]:
    from .predictor import Predictor

    parser = config_tool_parser("cascade_det.export", __doc__, weights=True, register=True)
    parser.add_argument("--format", required=True, choices=("torchscript", "onnx"))
    parser.add_argument("--output", required=True, help="folder to write model.ts / model.onnx into")
    parser.add_argument("--sample-image", required=True, help="an image to trace with and to check the export on")
    parser.add_argument("--int8", action="store_true", help="also write model_int8.onnx (cascade_det.quantize)")
    parser.add_argument("--calibration", default="", help="with --int8: a folder of images or a registered dataset")
    parser.add_argument(
        "--calibration-images", type=positive_int, default=200, help="with --int8: how many images to calibrate on"
    )
    parser.add_argument(
        "--test-dataset",
        default="",
        help="a registered dataset to print the box AP of model.onnx (and the int8 file) on",
    )
    args = parser.parse_args(argv)
    if args.format == "onnx" and not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        parser.error("--format onnx needs the onnx and onnxruntime packages: pip install 'cascade_det[deploy]'")
    if not os.path.isfile(args.sample_image):
        parser.error(f"--sample-image {args.sample_image} does not exist")
    if args.int8 and (args.format != "onnx" or not args.calibration):
        parser.error("--int8 quantises the ONNX file: give --format onnx and --calibration FOLDER_OR_DATASET")
    if args.calibration and not args.int8:
        parser.error("--calibration is for --int8")
    if args.test_dataset and args.format != "onnx":
        parser.error("--test-dataset evaluates the ONNX file: give --format onnx")
    check_writable(args.output, "--output")
    target = os.path.join(args.output, "model.ts" if args.format == "torchscript" else "model.onnx")
    targets = [target] + ([os.path.join(args.output, INT8_FILE)] if args.int8 else [])
    for path in targets:
        if os.path.exists(path):
            parser.error(f"{path} exists; not overwriting it (choose another --output)")
    tool_logging()
    register_datasets(args)
    # The data is checked before the (minutes-long) export: names, folders and their images.
    if args.test_dataset and args.test_dataset not in DatasetCatalog.list():
        parser.error(
            f"--test-dataset {args.test_dataset} is not a registered dataset (register one with --register-coco "
            "NAME JSON IMAGE_ROOT)"
        )
    calibration = calibration_files(args.calibration, args.calibration_images) if args.int8 else []
    predictor = Predictor(args.config_file, args.weights, device="cpu", overrides=args.opts)
    model = predictor.model
    plain_convolutions(model)  # the exported graph is the plain model, not its folded-BN / channels-last variant
    sample = image_tensor(args.sample_image, predictor.input_format)
    path = export(model, sample, args.format, args.output, predictor.model_metadata())
    runs = {path: load_exported(path)}  # one session per file, for every check below
    diff = compare(model, runs[path], sample)
    print(
        f"wrote {path}; on {args.sample_image} ({sample.shape[2]}x{sample.shape[1]}): {diff['detections']} "
        f"detections, largest box difference {diff['boxes']:.2e} px, score difference {diff['scores']:.2e}"
        + (f", mask difference {diff['masks']:.2e}" if "masks" in diff else "")
    )
    if not within_tolerance(diff):
        sys.exit(f"the exported model differs from the eager one beyond {TOLERANCE}: {diff}")
    written = [path]
    if args.int8:
        print(f"calibrating int8 on {len(calibration)} images of {args.calibration} ...", flush=True)
        details = {"calibration": args.calibration, "calibration_images": len(calibration)}
        tensors = calibration_tensors(calibration, predictor)
        written.append(quantize_onnx(path, targets[1], tensors, exported_metadata(path), details))
        runs[written[1]] = load_exported(written[1])
        overlap = detection_overlap(runs[path], runs[written[1]], sample)
        print(
            f"wrote {written[1]}; on {args.sample_image}: {overlap['matched']} of model.onnx's {overlap['reference']} "
            f"detections also made by the int8 model (same class, IoU >= {OVERLAP_IOU})"
        )
    if args.test_dataset:
        print(f"box AP on {args.test_dataset} ...", flush=True)
        named = {os.path.basename(file): run for file, run in runs.items()}
        for name, metrics in exported_box_ap(named, predictor, args.test_dataset).items():
            print(f"  {name}: AP {metrics['AP']:.2f}, AP50 {metrics['AP50']:.2f}")
    return written


if __name__ == "__main__":
    exit_on_user_error(main, sys.argv[1:])
