#!/usr/bin/env python
"""Our cascade vs Detectron2's built-in `CascadeROIHeads`, side by side in one run, same config and weights.

    python benchmarks/benchmark_cascade.py                      # CPU: COCO size (1333x800) and 320x320
    python benchmarks/benchmark_cascade.py --smoke              # seconds: tiny sizes, 1 repeat (tests run this)
    python benchmarks/benchmark_cascade.py --device cuda --amp  # also under autocast (bf16 on CPU, fp16 on CUDA)

Both models are built from one yacs config (default: Detectron2's model-zoo `Misc/cascade_mask_rcnn_R_50_FPN_1x`
without masks, i.e. its Cascade R-CNN R50-FPN), the built-in with `CascadeROIHeads`, ours with
`CascadeRCNNROIHeads`, and ours gets the built-in's weights. Data is synthetic (random images with random boxes).
Each variant runs warm-up iterations (not timed), then `--iters` timed iterations, `--repeats` times, the variants
interleaved inside every repeat so that machine noise hits them alike; the table reports medians.

Measured per size and variant: inference latency (median, p90) and images/s at batch 1 and at batch N, training
step (forward + backward + SGD step) s/iter and images/s, peak memory (CUDA: max allocated; CPU: peak resident
set growth), the data loader alone (images/s), and a per-component profile of our inference. Variants:
  builtin        Detectron2's CascadeROIHeads
  ours[torchvision roi_align]   our heads with Detectron2's pooler (FAST_ROI_ALIGN False)
  ours           CascadeRCNNROIHeads as shipped (FastROIPooler: multi-threaded RoIAlign, same outputs)
  ours+fold      plus frozen BN folded into the convolutions (cascade_det.modeling.speed, training and inference)
  ours+fold+cl   plus channels-last convolutions at inference (training stays NCHW: identical to ours+fold)
  ours+fold+cl+compile   the backbone under torch.compile (--compile)
Outputs are compared with the built-in's every run (same detections: class, IoU > 0.99, score within 1e-3).
Output: a table with ratios ours/builtin (speed: higher is better), and --json PATH.
"""

import copy
import os
import statistics
import sys
import threading
import time

import torch
from bench_common import benchmark_main, timing_parser

import cascade_det  # noqa: F401  (compat fixes first)
from cascade_det.modeling.speed import optimize_for_speed

from detectron2.config import get_cfg
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances

_START = time.perf_counter()


def progress(message: str) -> None:
    """One line on stderr per step, with the elapsed time: a CPU run takes tens of minutes."""
    print(f"[bench {time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = timing_parser(__doc__, warmup=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=2, help="batch N for the batched inference and training rows")
    p.add_argument("--amp", action="store_true", help="autocast on both models (bf16 on CPU, fp16 on CUDA)")
    p.add_argument("--compile", action="store_true", help="add the ours+compile variant")
    p.add_argument("--no-train", action="store_true", help="inference only")
    p.add_argument("--smoke", action="store_true", help="64x64 and 96x64 images, 1 repeat, 1 iteration: seconds")
    args = p.parse_args(argv)
    if args.smoke:
        args.sizes, args.iters, args.warmup, args.repeats, args.batch = ["64x64", "96x64"], 1, 0, 1, 2
    return args


def build_cfg(args):
    from detectron2 import model_zoo

    cfg = cascade_det.add_cascade_config(get_cfg())
    cfg.merge_from_file(args.config_file or model_zoo.get_config_file("Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml"))
    cfg.MODEL.MASK_ON = False
    cfg.MODEL.DEVICE = args.device
    if args.smoke:
        cfg.MODEL.RESNETS.DEPTH = 18
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
        cfg.MODEL.RPN.POST_NMS_TOPK_TEST, cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 50, 100
        cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    return cfg


def build_models(args):
    """name -> model: the built-in, and our variants with the built-in's weights (see the module docstring)."""
    cfg = build_cfg(args)
    torch.manual_seed(0)
    cfg.MODEL.ROI_HEADS.NAME = "CascadeROIHeads"
    builtin = build_model(cfg)
    cfg.MODEL.ROI_HEADS.NAME = "CascadeRCNNROIHeads"
    ours = build_model(cfg)
    calibrate_frozen_bn(builtin, args)
    ours.load_state_dict(builtin.state_dict())
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.FAST_ROI_ALIGN = False
    ours_torchvision = build_model(cfg)
    ours_torchvision.load_state_dict(builtin.state_dict())
    cfg.MODEL.ROI_BOX_CASCADE_HEAD.FAST_ROI_ALIGN = True
    models = {
        "builtin": builtin,
        "ours[torchvision roi_align]": ours_torchvision,
        "ours": ours,
        "ours+fold": optimize_for_speed(copy.deepcopy(ours), channels_last_inference=False),
        "ours+fold+cl": optimize_for_speed(copy.deepcopy(ours)),
    }
    if args.compile:
        fast = optimize_for_speed(copy.deepcopy(ours))
        fast.backbone = torch.compile(fast.backbone)
        models["ours+fold+cl+compile"] = fast
    return cfg, models


def calibrate_frozen_bn(model, args):
    """Set every FrozenBatchNorm2d's statistics to those of its input on a synthetic image, in one forward pass,
    as a trained network's are: a random-init R-50 with unit statistics amplifies activations into the thousands,
    and its RPN then proposes one image-sized box instead of the ~1000 proposals a trained model passes on."""
    from detectron2.layers import FrozenBatchNorm2d

    def set_statistics(module, inputs):
        x = inputs[0].float()
        module.running_mean.copy_(x.mean((0, 2, 3)))
        module.running_var.copy_(x.var((0, 2, 3)) + 1e-5)

    handles = [m.register_forward_pre_hook(set_statistics) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    image = synthetic_batch(320, 320, 1, 1, args.device, seed=0)[0]["image"]
    with torch.no_grad():
        model.eval().backbone(((image - model.pixel_mean) / model.pixel_std)[None])
    for h in handles:
        h.remove()
    # Confident classes, as a trained classifier has (at random init no score passes the 0.05 test threshold).
    g = torch.Generator().manual_seed(0)
    for predictor in model.roi_heads.box_predictor:
        predictor.cls_score.bias.data.copy_(torch.randn(predictor.cls_score.bias.shape, generator=g) * 2)


def synthetic_batch(w, h, n, num_classes, device, seed):
    """n images (3, h, w) near the pixel mean, each with 3-8 random ground-truth boxes."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(n):
        image = (torch.rand(3, h, w, generator=g) * 255).to(device)
        k = int(torch.randint(3, 9, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = (torch.rand(k, 2, generator=g) * 0.3 + 0.05) * torch.tensor([w, h])
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], 1).to(device))
        inst.gt_classes = torch.randint(0, num_classes, (k,), generator=g).to(device)
        batch.append({"image": image, "height": h, "width": w, "instances": inst})
    return batch


class PeakMemory:
    """Peak memory growth during a block: CUDA max allocated, or CPU resident set sampled every 2 ms."""

    def __init__(self, device):
        self.device, self.peak = device, 0

    @staticmethod
    def _rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base, self.stop = self._rss(), threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self._rss() - self.base)
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.device == "cuda":
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.stop.set()
            self.thread.join()


def timed(fn, device, iters):
    times = []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def autocast(args):
    dtype = torch.float16 if args.device == "cuda" else torch.bfloat16
    return torch.autocast(args.device, dtype=dtype, enabled=args.amp)


def infer_fn(model, batch, args):
    inputs = [{k: v for k, v in x.items() if k != "instances"} for x in batch]

    def run():
        with torch.no_grad(), autocast(args):
            return model(inputs)

    return run


def train_fn(model, batch, args):
    from detectron2.utils.events import EventStorage

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-6, momentum=0.9)  # tiny lr: weights stay (nearly) comparable
    storage = EventStorage()

    def run():
        model.train()
        with storage, autocast(args):
            losses = model(batch)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        model.eval()

    return run


def match_detections(reference, other):
    """(matched, total, largest score difference among the matched): how many of `reference`'s detections
    (Instances, CPU) `other` also makes: same class, IoU > 0.99, score within 1e-3."""
    from detectron2.structures import pairwise_iou

    if not len(reference) or not len(other):
        return 0, len(reference), 0.0
    iou = pairwise_iou(reference.pred_boxes, other.pred_boxes)
    iou[reference.pred_classes[:, None] != other.pred_classes[None, :]] = 0
    best, idx = iou.max(1)
    diff = (reference.scores - other.scores[idx]).abs()
    ok = (best > 0.99) & (diff < 1e-3)
    return int(ok.sum()), len(reference), float(diff[ok].max()) if ok.any() else 0.0


def check_equal_outputs(models, batch, args):
    """Every variant's detections on `batch` against the built-in's: the fraction of the built-in's detections
    that the variant also makes (`match_detections`), and the largest score difference among those. Float
    rounding can reorder near-tied candidates in NMS, so a handful may differ."""
    outputs = {name: infer_fn(m.eval(), batch, args)() for name, m in models.items()}
    report = {}
    for name, out in outputs.items():
        matched, total, score_diff = 0, 0, 0.0
        for a, b in zip(out, outputs["builtin"]):
            m, t, d = match_detections(b["instances"].to("cpu"), a["instances"].to("cpu"))
            matched, total, score_diff = matched + m, total + t, max(score_diff, d)
        report[name] = {"matched_fraction": matched / max(total, 1), "detections": total, "max_score_diff": score_diff}
    return report


def components(model) -> dict:
    """name -> module of the parts `profile_components` times and counts: backbone, rpn, and per stage its box
    head and predictor."""
    heads = model.roi_heads
    parts = {"backbone": model.backbone, "rpn": model.proposal_generator}
    for t, (head, predictor) in enumerate(zip(heads.box_head, heads.box_predictor)):
        parts[f"stage{t}.box_head"], parts[f"stage{t}.predictor"] = head, predictor
    return parts


def count_gflop(model, counts: dict) -> list:
    """Hooks that add, per part of `components(model)`, the GFLOP (2 x multiply-accumulates) of its convolutions
    and fully connected layers to `counts` at each forward; returns the handles. With the parts' times, the
    arithmetic rate each part reaches (GFLOP/s), i.e. how close to the CPU's peak it already runs and so how much
    an eager change with the same arithmetic can gain."""

    def count(mod, _inputs, output, key):
        if isinstance(mod, torch.nn.Conv2d):
            macs = output.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            macs = output.numel() * mod.in_features
        counts[key] = counts.get(key, 0.0) + 2 * macs / 1e9

    return [
        m.register_forward_hook(lambda mod, i, o, key=key: count(mod, i, o, key))
        for key, part in components(model).items()
        for m in part.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]


def profile_components(model, batch, args):
    """(seconds, GFLOP) per component of one inference of `model` (hooks; CUDA synchronised at each boundary):
    the GFLOP counted in the untimed first run (`count_gflop`), the seconds in the second."""
    marks, handles, gflop = {}, [], {}

    def sync():
        if args.device == "cuda":
            torch.cuda.synchronize()

    def add(module, name):
        def pre(*_):
            sync()
            marks.setdefault(name, []).append(-time.perf_counter())

        def post(*_):
            sync()
            marks[name][-1] += time.perf_counter()

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    for name, part in components(model).items():
        add(part, name)
    add(model.roi_heads, "roi_heads")
    add(model.roi_heads.box_pooler, "box_pooler")
    run = infer_fn(model, batch, args)
    counters = count_gflop(model, gflop)
    run()
    for h in counters:
        h.remove()
    marks.clear()
    sync()
    start = time.perf_counter()
    run()
    sync()
    total = time.perf_counter() - start
    for h in handles:
        h.remove()
    out = {}
    for name, values in marks.items():
        if name == "box_pooler":
            out.update({f"stage{t}.roi_align": v for t, v in enumerate(values)})
        else:
            out[name] = sum(values)
    inner = sum(v for k, v in out.items() if k.startswith("stage"))
    out["roi_heads.other (sampling, box decoding, post-process)"] = out.pop("roi_heads") - inner
    out["other (preprocess, postprocess)"] = (
        total - out["backbone"] - out["rpn"] - inner - out["roi_heads.other (sampling, box decoding, post-process)"]
    )
    out["total"] = total
    return out, gflop


def loader_images_per_s(cfg, seconds=3.0):
    """Images/s of Detectron2's training loader alone on the embedded dataset (mapper, augmentation, batching)."""
    from detectron2.data import build_detection_train_loader

    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TRAIN = ("cascade_shapes_train",)
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (128,), 128
    cfg.SOLVER.IMS_PER_BATCH = 8
    cfg.DATALOADER.NUM_WORKERS = 2
    it = iter(build_detection_train_loader(cfg))
    next(it)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += len(next(it))
    return n / (time.perf_counter() - start)


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def benchmark(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    progress(f"building the {'smoke ' if args.smoke else ''}models on {args.device}")
    cfg, models = build_models(args)
    names = list(models)
    results = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "amp": args.amp,
        "batch": args.batch,
        "sizes": {},
    }
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        batch = synthetic_batch(w, h, args.batch, cfg.MODEL.ROI_HEADS.NUM_CLASSES, args.device, seed=w * h)
        rows = {name: {"infer_b1": [], "infer_bN": [], "train": [], "mem_infer": 0, "mem_train": 0} for name in names}
        # Outputs first, while every variant holds the same weights (training below updates copies only).
        progress(f"{size}: comparing every variant's detections with the built-in's")
        outputs_vs_builtin = check_equal_outputs(models, batch, args)
        fns = {}
        for name, model in models.items():
            model.eval()
            fns[name] = {"infer_b1": infer_fn(model, batch[:1], args), "infer_bN": infer_fn(model, batch, args)}
            if not args.no_train and "+cl" not in name:  # channels-last applies to inference only
                fns[name]["train"] = train_fn(copy.deepcopy(model), batch, args)
        for kind in ("infer_b1", "infer_bN", "train"):
            for name in names:
                if kind in fns[name]:
                    progress(f"{size}: warm-up {kind} {name}")
                    timed(fns[name][kind], args.device, args.warmup)
        for repeat in range(args.repeats):
            for kind in ("infer_b1", "infer_bN", "train"):
                for name in names:
                    if kind not in fns[name]:
                        continue
                    with PeakMemory(args.device) as mem:
                        rows[name][kind] += timed(fns[name][kind], args.device, args.iters)
                    progress(
                        f"{size}: repeat {repeat + 1}/{args.repeats} {kind} {name}: "
                        f"{statistics.median(rows[name][kind][-args.iters :]):.3f} s"
                    )
                    key = "mem_train" if kind == "train" else "mem_infer"
                    rows[name][key] = max(rows[name][key], mem.peak)
        summary = {}
        for name, row in rows.items():
            s = {}
            for kind in ("infer_b1", "infer_bN", "train"):
                if row[kind]:
                    n = 1 if kind == "infer_b1" else args.batch
                    s[kind] = {
                        "median_s": statistics.median(row[kind]),
                        "p90_s": percentile(row[kind], 0.9),
                        "images_per_s": n / statistics.median(row[kind]),
                        "samples": len(row[kind]),
                    }
            s["peak_mem_infer_mb"] = row["mem_infer"] / 2**20
            if row["train"]:
                s["peak_mem_train_mb"] = row["mem_train"] / 2**20
            summary[name] = s
        progress(f"{size}: profiling components")
        profile, gflop = profile_components(models["ours+fold+cl"], batch[:1], args)
        results["sizes"][size] = {
            "variants": summary,
            "outputs_vs_builtin": outputs_vs_builtin,
            "profile_ours+fold+cl": profile,
            "profile_builtin": profile_components(models["builtin"], batch[:1], args)[0],
            "gflop_ours+fold+cl": gflop,
        }
    if not args.smoke:
        results["loader_images_per_s"] = loader_images_per_s(cfg)
    return results


def print_table(results):
    print(
        f"device {results['device']} (torch {results['torch']}, {results['threads']} threads), amp={results['amp']}, "
        f"batch N={results['batch']}; medians; ratio = builtin time / variant time (>1: faster than builtin)"
    )
    header = (
        "| size | variant | infer b=1 median / p90 (s) | ratio | infer b=N img/s | ratio | train s/iter | ratio | "
        "peak mem infer / train (MB) | same detections |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for size, r in results["sizes"].items():
        base = r["variants"]["builtin"]
        for name, s in r["variants"].items():

            def ratio(kind, base=base, s=s):
                return f"{base[kind]['median_s'] / s[kind]['median_s']:.2f}x" if kind in s else "-"

            train = f"{s['train']['median_s']:.3f}" if "train" in s else "-"
            train_mem = f"{s['peak_mem_train_mb']:.0f}" if "train" in s else "-"
            print(
                f"| {size} | {name} | {s['infer_b1']['median_s']:.3f} / {s['infer_b1']['p90_s']:.3f} | "
                f"{ratio('infer_b1')} | {s['infer_bN']['images_per_s']:.2f} | {ratio('infer_bN')} | {train} | "
                f"{ratio('train')} | {s['peak_mem_infer_mb']:.0f} / {train_mem} | "
                f"{100 * r['outputs_vs_builtin'][name]['matched_fraction']:.1f}% |"
            )
    for size, r in results["sizes"].items():
        for which in ("profile_builtin", "profile_ours+fold+cl"):
            parts = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in r[which].items())
            print(f"{size} {which.split('_', 1)[1]} inference b=1: {parts}")
        profile, gflop = r["profile_ours+fold+cl"], r.get("gflop_ours+fold+cl", {})
        rates = ", ".join(
            f"{k} {g:.1f} GFLOP in {profile[k] * 1000:.0f} ms = {g / profile[k]:.0f} GFLOP/s"
            for k, g in gflop.items()
            if profile[k] > 0
        )
        if rates:
            print(f"{size} ours+fold+cl arithmetic rate (convolutions and fc layers): {rates}")
    if "loader_images_per_s" in results:
        print(f"data loader alone (embedded dataset, 2 workers): {results['loader_images_per_s']:.0f} images/s")


def main(argv=None):
    return benchmark_main(parse_args, benchmark, print_table, argv)


if __name__ == "__main__":
    main()
