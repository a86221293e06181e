#!/usr/bin/env python
"""The exported model's speed: ONNX in onnxruntime and TorchScript vs our eager model and Detectron2's built-in
cascade, side by side in one run, same weights, same images, single-image inference on the CPU.

    python benchmarks/benchmark_deploy.py                 # 1333x800 and 320x320, Cascade R-CNN R50-FPN
    python benchmarks/benchmark_deploy.py --smoke         # seconds: an R-18 at 64x64 and 96x64 (tests run this)

The models are benchmark_cascade.py's (Detectron2's model-zoo Cascade R-CNN R50-FPN, its frozen BN statistics set
from a synthetic image and confident class biases, so that the RPN and the heads pass realistic numbers of boxes);
ours is exported once with `cascade_det.export` on an image of the first size and runs unchanged at the others.
Every variant gets the same (3, H, W) tensor and returns detections in its pixels (no resizing, as the exported
model's contract says); eager variants run `model.inference(..., do_postprocess=False)` under torch.no_grad.
Variants, timed interleaved inside every repeat so that machine noise hits them alike (medians reported):
  builtin              Detectron2's CascadeROIHeads, eager
  ours                 CascadeRCNNROIHeads as shipped, eager
  ours+fold+cl         eager with frozen BN folded and channels-last convolutions (cascade_det.modeling.speed)
  torchscript          ours exported to model.ts, run by torch.jit
  onnxruntime          ours exported to model.onnx, run by onnxruntime's CPU provider (threads = torch's)
  onnxruntime int8     model.onnx quantised by cascade_det.quantize (static int8, calibrated on
                       --calibration-images synthetic images of the first size; speed only: the synthetic model's
                       AP means nothing, --accuracy WEIGHTS measures the AP of a trained model's files)
  openvino, openvino int8   (--openvino; needs `pip install openvino`) the same two files run by OpenVINO's CPU
                       plugin instead of onnxruntime, compiled once per image size: OpenVINO's shape inference
                       rejects the FPN's top-down addition with the height and width left dynamic (2026.4), so
                       each size gets the file's graph with a static input shape
Each exported variant's detections are compared with ours (cascade_det.export.compare: boxes within 0.05 px,
scores within 1e-3) and every variant's with the built-in's (same class, IoU > 0.99, score within 1e-3).
Output: a table with ratios against ours and against the built-in, and --json PATH (never overwritten).

    python benchmarks/benchmark_deploy.py --accuracy output/shapes_cascade_rcnn_R_18_FPN/model_final.pth
    python benchmarks/benchmark_deploy.py --accuracy train       # trains the quickstart model first (minutes)

--accuracy adds the int8 file's accuracy: the quickstart model (`configs/Shapes/cascade_rcnn_R_18_FPN.py`) with
those weights is exported with `--int8`, calibrated on --accuracy-calibration-images images of the embedded train
set, and the box AP of model.onnx and model_int8.onnx on the embedded val set (200 images) is printed side by side.
"""

import copy
import os
import statistics
import subprocess
import sys
import tempfile

import benchmark_cascade as bench  # its models, synthetic images, timing and output checks
import torch
from bench_common import benchmark_main, timing_parser

from cascade_det.export import ExportableDetector, compare, detection_overlap, export, exported_metadata, load_exported
from cascade_det.modeling.speed import optimize_for_speed
from cascade_det.quantize import quantize_onnx


def parse_args(argv=None):
    p = timing_parser(__doc__, warmup=2)  # --threads: torch's and onnxruntime's
    p.add_argument("--calibration-images", type=int, default=8, help="synthetic images the int8 file is calibrated on")
    p.add_argument("--accuracy", default="", help="quickstart weights (or 'train') to measure the int8 file's AP with")
    p.add_argument("--accuracy-calibration-images", type=int, default=200)
    p.add_argument("--openvino", action="store_true", help="also run both ONNX files with OpenVINO")
    p.add_argument("--smoke", action="store_true", help="R-18, 64x64 and 96x64 images, 1 repeat: seconds")
    args = p.parse_args(argv)
    if args.openvino:
        try:
            import openvino  # noqa: F401
        except ImportError:
            p.error("--openvino needs the openvino package (pip install openvino); run without --openvino otherwise")
    if args.smoke:
        args.sizes, args.iters, args.warmup, args.repeats = ["64x64", "96x64"], 1, 1, 1
        args.calibration_images = 2
    args.device, args.amp, args.compile = "cpu", False, False  # what benchmark_cascade's builders read
    return args


def build_variants(args):
    """name -> a function of one image tensor (3, H, W); plus ours (the eager model the exports are checked
    against) and the built-in model."""
    _, models = bench.build_models(args)
    builtin, ours = models["builtin"].eval(), models["ours"].eval()
    w, h = (int(v) for v in args.sizes[0].split("x"))
    sample = bench.synthetic_batch(w, h, 1, 1, "cpu", seed=1)[0]["image"]
    bench.progress(f"exporting ours to TorchScript and ONNX on a {args.sizes[0]} image")
    # The loaded models hold what they need in memory: the files (hundreds of MB) go when this block ends.
    with tempfile.TemporaryDirectory(prefix="cascade_det_deploy_bench_") as folder:
        ts_path = export(ours, sample, "torchscript", folder)  # ours is plain (no FastConv2d): exported as it is
        onnx_path = export(ours, sample, "onnx", folder)
        bench.progress(f"quantising model.onnx to int8 on {args.calibration_images} synthetic images")
        images = [
            bench.synthetic_batch(w, h, 1, 1, "cpu", seed=100 + i)[0]["image"] for i in range(args.calibration_images)
        ]
        int8_path = quantize_onnx(
            onnx_path,
            os.path.join(folder, "model_int8.onnx"),
            (i.numpy() for i in images),
            exported_metadata(onnx_path),
            {"calibration": "synthetic"},
        )
        paths = {"torchscript": ts_path, "onnxruntime": onnx_path, "onnxruntime int8": int8_path}
        exported = {
            name: load_exported(path, torch.get_num_threads()) if path.endswith(".onnx") else load_exported(path)
            for name, path in paths.items()
        }
        if args.openvino:
            exported["openvino"] = openvino_runner(onnx_path, torch.get_num_threads())
            exported["openvino int8"] = openvino_runner(int8_path, torch.get_num_threads())
        file_mb = {name: os.path.getsize(path) / 2**20 for name, path in paths.items()}

    def eager(model):
        def run(image):
            with torch.no_grad():
                return model.inference([{"image": image}], do_postprocess=False)

        return run

    variants = {
        "builtin": eager(builtin),
        "ours": eager(ours),
        "ours+fold+cl": eager(optimize_for_speed(copy.deepcopy(ours))),
        **exported,
    }
    return variants, ours, builtin, file_mb


def openvino_runner(path: str, threads: int):
    """The ONNX file at `path` as a function of one image tensor, run by OpenVINO's CPU plugin: the graph is read
    now (the file may go), compiled with a static input shape at the first image of each size (see the module
    docstring for why static)."""
    import openvino

    core = openvino.Core()
    graph = core.read_model(path)
    compiled = {}

    def run(image: torch.Tensor):
        shape = tuple(image.shape)
        if shape not in compiled:
            model = graph.clone()
            model.reshape({"image": list(shape)})
            network = core.compile_model(
                model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
            )
            compiled[shape] = (network.create_infer_request(), len(network.outputs))
        request, outputs = compiled[shape]
        request.infer({"image": image.numpy()})
        return [request.get_output_tensor(i).data.copy() for i in range(outputs)]

    return run


def same_as_builtin(run, reference, image) -> float:
    """The fraction of the built-in's detections on `image` (`reference`, Instances) that this variant also makes
    (same class, IoU > 0.99, score within 1e-3: benchmark_cascade's criterion)."""
    from detectron2.structures import Boxes, Instances

    out = run(image)
    if isinstance(out, list) and out and isinstance(out[0], Instances):
        instances = out[0]
    else:  # an exported model's (boxes, scores, classes)
        instances = Instances(tuple(image.shape[1:]))
        instances.pred_boxes = Boxes(torch.as_tensor(out[0]))
        instances.scores = torch.as_tensor(out[1])
        instances.pred_classes = torch.as_tensor(out[2])
    matched, total, _ = bench.match_detections(reference, instances)
    return matched / max(total, 1)


def benchmark(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    bench.progress(f"building the {'smoke ' if args.smoke else ''}models")
    variants, ours, builtin, file_mb = build_variants(args)
    results = {"device": "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(), "sizes": {}}
    results["file_mb"] = file_mb
    for runtime in ("onnxruntime", "openvino") if args.openvino else ("onnxruntime",):  # both needed by now
        results[runtime] = __import__(runtime).__version__
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        image = bench.synthetic_batch(w, h, 1, 1, "cpu", seed=w * h)[0]["image"]
        checks = {}
        with torch.no_grad():
            (reference,) = builtin.inference([{"image": image}], do_postprocess=False)
        for name, run in variants.items():
            checks[name] = {"same_as_builtin": same_as_builtin(run, reference, image)}
            if name in ("torchscript", "onnxruntime", "openvino"):
                checks[name]["vs_ours"] = compare(ours, run, image)
            if name.endswith(" int8"):
                checks[name]["vs_fp32"] = detection_overlap(variants["onnxruntime"], run, image)
        with torch.no_grad():
            checks["detections"] = len(ExportableDetector(ours)(image)[0])
        bench.progress(f"{size}: {checks['detections']} detections; checks {checks}")
        calls = {name: (lambda run=run, image=image: run(image)) for name, run in variants.items()}
        times = {name: [] for name in variants}
        for call in calls.values():
            bench.timed(call, "cpu", args.warmup)
        for repeat in range(args.repeats):
            for name, call in calls.items():
                times[name] += bench.timed(call, "cpu", args.iters)
                median = statistics.median(times[name])
                bench.progress(f"{size}: repeat {repeat + 1}/{args.repeats} {name}: {median:.3f} s")
        results["sizes"][size] = {
            "checks": checks,
            "variants": {
                name: {"median_s": statistics.median(t), "p90_s": bench.percentile(t, 0.9), "samples": len(t)}
                for name, t in times.items()
            },
        }
    if args.accuracy:
        with tempfile.TemporaryDirectory(prefix="cascade_det_int8_accuracy_") as folder:
            results["int8_accuracy"] = int8_accuracy(args, folder)
    return results


QUICKSTART = "configs/Shapes/cascade_rcnn_R_18_FPN.py"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def int8_accuracy(args, folder):
    """Box AP of the quickstart model's fp32 and int8 ONNX files on the embedded val set (cascade_det.export with
    --int8 --test-dataset), the weights given or trained here by the quickstart command."""
    from cascade_det.data import ensure_embedded_split
    from cascade_det.export import main as export_main
    from cascade_det.quantize import exported_box_ap

    weights = args.accuracy
    if weights == "train":
        bench.progress("training the quickstart model (train_net.py, as the README's first command)")
        out = os.path.join(folder, "quickstart")
        command = [sys.executable, "train_net.py", "--config-file", QUICKSTART, f"train.output_dir={out}"]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        weights = os.path.join(out, "model_final.pth")
    from detectron2.data import DatasetCatalog

    ensure_embedded_split("cascade_shapes_val")  # generated where missing
    sample = DatasetCatalog.get("cascade_shapes_val")[0]["file_name"]
    bench.progress(
        f"exporting the quickstart model with --int8 ({args.accuracy_calibration_images} calibration images)"
    )
    fp32, int8 = export_main(
        ["--config-file", os.path.join(ROOT, QUICKSTART), "--format", "onnx", "--output", os.path.join(folder, "q")]
        + ["--sample-image", sample, "--weights", weights, "--int8", "--calibration", "cascade_shapes_train"]
        + ["--calibration-images", str(args.accuracy_calibration_images)]
    )
    from cascade_det.predictor import Predictor

    predictor = Predictor(os.path.join(ROOT, QUICKSTART), weights, device="cpu")
    bench.progress("box AP of both files on cascade_shapes_val")
    runs = {"fp32": load_exported(fp32, torch.get_num_threads()), "int8": load_exported(int8, torch.get_num_threads())}
    ap = exported_box_ap(runs, predictor, "cascade_shapes_val")
    return {"weights": args.accuracy, "calibration_images": args.accuracy_calibration_images, **ap}


def print_table(results):
    print(
        f"CPU, torch {results['torch']}, onnxruntime {results.get('onnxruntime', '-')}"
        + (f", openvino {results['openvino']}" if "openvino" in results else "")
        + f", {results['threads']} threads; "
        "single image; medians; ratio = other's time / variant's time (>1: the variant is faster)"
    )
    header = "| size | variant | latency median / p90 (s) | vs ours eager | vs builtin | same detections |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for size, r in results["sizes"].items():
        v = r["variants"]
        for name, s in v.items():
            check = r["checks"][name]
            same = f"{100 * check['same_as_builtin']:.1f}% of builtin's"
            if "vs_ours" in check:
                d = check["vs_ours"]
                same += f"; vs ours: boxes {d['boxes']:.1e} px, scores {d['scores']:.1e}"
            if "vs_fp32" in check:
                d = check["vs_fp32"]
                same += f"; {d['matched']} of the fp32 file's {d['reference']} (same class, IoU >= 0.9)"
            print(
                f"| {size} | {name} | {s['median_s']:.3f} / {s['p90_s']:.3f} | "
                f"{v['ours']['median_s'] / s['median_s']:.2f}x | {v['builtin']['median_s'] / s['median_s']:.2f}x | "
                f"{same} |"
            )
    print("exported files: " + ", ".join(f"{k} {mb:.0f} MB" for k, mb in results["file_mb"].items()))
    if "int8_accuracy" in results:
        a = results["int8_accuracy"]
        print(
            f"quickstart model on cascade_shapes_val (int8 calibrated on {a['calibration_images']} train images): "
            f"box AP fp32 {a['fp32']['AP']:.2f}, int8 {a['int8']['AP']:.2f} "
            f"(difference {a['int8']['AP'] - a['fp32']['AP']:+.2f}); "
            f"AP50 {a['fp32']['AP50']:.2f} / {a['int8']['AP50']:.2f}"
        )


def main(argv=None):
    return benchmark_main(parse_args, benchmark, print_table, argv)


if __name__ == "__main__":
    main()
