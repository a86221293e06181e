"""Parameters and FLOPs of a config's model, per component: backbone, RPN, each cascade stage's box head and
predictor, and its mask head where there is one, counted by fvcore on one inference.

    python -m cascade_det.analyze --config-file configs/COCO/cascade_rcnn_R_50_FPN_1x.py
    python -m cascade_det.analyze --config-file CFG --size 800x1333 [overrides]

FLOPs are fvcore's (one multiply-add counts as one), for a random image of --size (default: the config's test size,
e.g. 800x1333 for COCO), with the number of RoIs the RPN passes at test time. RoIAlign and NMS are not counted
(fvcore has no count for them; they move data rather than multiply). Works with any Detectron2 R-CNN config.
"""

import json
import sys
from collections import OrderedDict
from typing import Dict, Sequence, Tuple

import torch
from fvcore.nn import parameter_count
from tabulate import tabulate

from detectron2.utils.analysis import FlopCountAnalysis

from .engine.args import config_tool_parser, image_size, register_datasets, tool_logging
from .engine.model_metadata import inference_identity, test_resize
from .engine.run import Run
from .engine.setup import load_config
from .errors import exit_on_user_error
from .modeling.speed import plain_convolutions
from .tracing import quiet_tracing
from .weights import load_weights_file, model_metadata_of

__all__ = ["analyze", "main"]


def _components(model) -> Dict[str, Sequence[str]]:
    """Component name -> the module names (prefixes) it is made of."""
    heads = model.roi_heads
    out = OrderedDict([("backbone", ["backbone"]), ("RPN", ["proposal_generator"])])
    cascade = isinstance(heads.box_head, torch.nn.ModuleList)
    mask_heads = getattr(heads, "mask_head", None)
    per_stage_masks = isinstance(mask_heads, torch.nn.ModuleList)
    for t in range(len(heads.box_head) if cascade else 1):
        if cascade:
            out[f"stage {t} box"] = [f"roi_heads.box_head.{t}", f"roi_heads.box_predictor.{t}"]
        else:
            out["box head"] = ["roi_heads.box_head", "roi_heads.box_predictor"]
        if per_stage_masks:
            out[f"stage {t} mask"] = [f"roi_heads.mask_head.{t}"]
    if mask_heads is not None and not per_stage_masks:
        out["mask head"] = ["roi_heads.mask_head"]
    return out


def analyze(model, height: int, width: int) -> Dict[str, Dict[str, float]]:
    """{component: {"parameters": count, "gflops": count / 1e9}} for one inference at height x width."""
    plain_convolutions(model)  # count the plain convolutions (the speed options only reorder the work)
    model.eval()
    image = torch.rand(3, height, width) * 255
    flops = FlopCountAnalysis(model, [{"image": image}])
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    with quiet_tracing():
        by_module = flops.by_module()
    # FlopCountAnalysis traces the model inside a wrapper, so its module names start with "model."
    by_module = {name[len("model.") :]: count for name, count in by_module.items() if name.startswith("model.")}
    params = parameter_count(model)
    report = OrderedDict()
    for name, prefixes in _components(model).items():
        report[name] = {
            "parameters": sum(params.get(p, 0) for p in prefixes),
            "gflops": sum(by_module.get(p, 0) for p in prefixes) / 1e9,
        }
    report["total"] = {"parameters": params[""], "gflops": flops.total() / 1e9}
    return report


def _test_size(run: Run) -> Tuple[int, int]:
    """(short side, long side) of the config's test-time resize; 800 x 1333 where it has none."""
    resize = test_resize(run)
    return (resize["short_edge_length"], resize["max_size"]) if resize else (800, 1333)


def main(argv: Sequence[str] = None) -> Dict:
    parser = config_tool_parser("cascade_det.analyze", __doc__, weights=True, register=True)
    parser.add_argument(
        "--size", type=image_size, default="", help="HxW of the image (default: the config's test size)"
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    tool_logging()
    register_datasets(args)
    run = Run.of(load_config(args.config_file, args.opts), world_size=1).replace(device="cpu")
    if run.settings.num_classes is None:  # the count from the checkpoint (--weights) or the registered datasets
        stored = model_metadata_of(load_weights_file(args.weights), args.weights) if args.weights else None
        run = inference_identity(run, stored, args.weights or "")[0]
    if args.size:
        height, width = (int(v) for v in args.size.lower().split("x"))
    else:
        short, long = _test_size(run)
        height, width = short, long  # a landscape image of the test size
    model = run.build_model()
    report = analyze(model, height, width)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        rows = [[name, f"{r['parameters'] / 1e6:.2f} M", f"{r['gflops']:.2f}"] for name, r in report.items()]
        print(f"{args.config_file} at {height}x{width}:")
        print(tabulate(rows, headers=["component", "parameters", "GFLOPs"], tablefmt="pipe"))
    return report


if __name__ == "__main__":
    exit_on_user_error(main, sys.argv[1:])
