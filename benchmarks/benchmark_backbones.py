#!/usr/bin/env python
"""The Swin-T and ConvNeXt-T Cascade Mask R-CNN recipes: inference latency, and training step time and peak memory
with and without activation checkpointing, side by side in one run.

    python benchmarks/benchmark_backbones.py                  # CPU, 640x480, batch 2
    python benchmarks/benchmark_backbones.py --device cuda --sizes 1333x800
    python benchmarks/benchmark_backbones.py --smoke          # seconds: tiny networks and images (tests run this)

Each model is its recipe's (`configs/COCO/cascade_mask_rcnn_{swin,convnext}_T_FPN_3x.py`, 80 classes, random
weights) on synthetic images with random boxes and box-shaped masks; `+checkpoint` is the same model with
`use_checkpoint=True` (every backbone block recomputed in the backward pass) and the same weights. Variants are
interleaved inside every repeat (machine noise hits them alike); medians are reported, with the ratios
checkpoint / plain (time: > 1 is slower; memory: < 1 is the saving). Peak memory: CUDA max allocated, or the CPU's
resident set growth.
"""

import copy
import os
import statistics

import torch
from bench_common import benchmark_main, timing_parser
from benchmark_cascade import PeakMemory, infer_fn, percentile, progress, synthetic_batch, timed

import cascade_det  # noqa: F401
from cascade_det.engine import load_config

from detectron2.config import instantiate
from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = {
    "swin_T": "configs/COCO/cascade_mask_rcnn_swin_T_FPN_3x.py",
    "convnext_T": "configs/COCO/cascade_mask_rcnn_convnext_T_FPN_3x.py",
}
SMOKE_BACKBONES = {  # --smoke: the recipes' structure with tiny widths and depths (and narrow heads, few RoIs)
    "swin_T": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2]},
    "convnext_T": {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]},
}


def parse_args(argv=None):
    p = timing_parser(__doc__, warmup=1)
    p.set_defaults(sizes=["640x480"], iters=2, repeats=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=2, help="images per training step")
    p.add_argument("--smoke", action="store_true", help="tiny networks, 96x64 images, 1 repeat, 1 iteration")
    args = p.parse_args(argv)
    args.amp = False  # inference in fp32 (benchmark_cascade's infer_fn reads it); training as the recipes train
    if args.smoke:
        args.sizes, args.iters, args.repeats, args.warmup = ["96x64"], 1, 1, 0
    return args


def build_model(recipe: str, use_checkpoint: bool, args):
    cfg = load_config(os.path.join(ROOT, RECIPES[recipe]))
    cfg.model.backbone.bottom_up.use_checkpoint = use_checkpoint
    if args.smoke:
        cfg.model.backbone.bottom_up.update(SMOKE_BACKBONES[recipe])
        cfg.model.roi_heads.batch_size_per_image = 32
        cfg.model.proposal_generator.update(pre_nms_topk=(200, 100), post_nms_topk=(32, 16))
        for head, predictor in zip(cfg.model.roi_heads.box_heads, cfg.model.roi_heads.box_predictors):
            head.update(conv_dims=[16] * 4, fc_dims=[32])  # the 4conv1fc structure, narrow
            predictor.input_shape = ShapeSpec(channels=32)
        for head in cfg.model.roi_heads.mask_head:
            head.conv_dims = [16] * 5
    return instantiate(cfg.model).to(args.device)


def with_masks(batch):
    """The synthetic batch with each box filled as its instance mask (the recipes train mask heads)."""
    for x in batch:
        inst = x["instances"]
        h, w = inst.image_size
        masks = torch.zeros(len(inst), h, w, dtype=torch.bool, device=inst.gt_boxes.device)
        for i, (x0, y0, x1, y1) in enumerate(inst.gt_boxes.tensor.round().int().tolist()):
            masks[i, y0:y1, x0:x1] = True
        inst.gt_masks = BitMasks(masks)
    return batch


def train_fn(model, batch, args):
    """One AdamW step of the recipe (forward, backward, step), under autocast on CUDA as the recipes train."""
    from detectron2.utils.events import EventStorage

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    storage = EventStorage()

    def run():
        model.train()
        with storage, torch.autocast(args.device, enabled=args.device == "cuda"):
            losses = model(batch)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    return run


def benchmark(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(), "sizes": {}}
    progress(f"building the {'smoke ' if args.smoke else ''}models on {args.device}")
    models = {}
    for recipe in RECIPES:
        torch.manual_seed(0)
        models[recipe] = build_model(recipe, False, args)
        models[f"{recipe}+checkpoint"] = build_model(recipe, True, args)
        models[f"{recipe}+checkpoint"].load_state_dict(models[recipe].state_dict())
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        batch = with_masks(synthetic_batch(w, h, args.batch, 80, args.device, seed=w * h))
        fns = {name: {"train": train_fn(copy.deepcopy(model), batch, args)} for name, model in models.items()}
        for recipe in RECIPES:
            fns[recipe]["infer_b1"] = infer_fn(models[recipe].eval(), batch[:1], args)
        times = {name: {kind: [] for kind in fn} for name, fn in fns.items()}
        memory = dict.fromkeys(fns, 0)
        for kind in ("infer_b1", "train"):
            for name, fn in fns.items():
                if kind in fn:
                    progress(f"{size}: warm-up {kind} {name}")
                    timed(fn[kind], args.device, args.warmup)
        for repeat in range(args.repeats):
            for kind in ("infer_b1", "train"):
                for name, fn in fns.items():
                    if kind not in fn:
                        continue
                    with PeakMemory(args.device) as mem:
                        times[name][kind] += timed(fn[kind], args.device, args.iters)
                    if kind == "train":
                        memory[name] = max(memory[name], mem.peak)
                    median = statistics.median(times[name][kind][-args.iters :])
                    progress(f"{size}: repeat {repeat + 1}/{args.repeats} {kind} {name}: {median:.3f} s")
        results["sizes"][size] = {
            name: {
                **{
                    kind: {"median_s": statistics.median(v), "p90_s": percentile(v, 0.9), "samples": len(v)}
                    for kind, v in times[name].items()
                },
                "peak_mem_train_mb": memory[name] / 2**20,
            }
            for name in fns
        }
    return results


def print_table(results):
    print(f"\ndevice {results['device']}, torch {results['torch']}, {results['threads']} threads; medians")
    print("| size | model | inference b1 (s) | train step (s) | peak train mem (MB) | checkpoint/plain: time, memory |")
    print("|---|---|---|---|---|---|")
    for size, rows in results["sizes"].items():
        for recipe in RECIPES:
            for name in (recipe, f"{recipe}+checkpoint"):
                row, plain = rows[name], rows[recipe]
                infer = f"{row['infer_b1']['median_s']:.3f}" if "infer_b1" in row else "-"
                ratio = "-"
                if name != recipe:
                    time_ratio = row["train"]["median_s"] / plain["train"]["median_s"]
                    mem_ratio = row["peak_mem_train_mb"] / max(plain["peak_mem_train_mb"], 1e-9)
                    ratio = f"{time_ratio:.2f}x, {mem_ratio:.2f}x"
                print(
                    f"| {size} | {name} | {infer} | {row['train']['median_s']:.3f} | "
                    f"{row['peak_mem_train_mb']:.0f} | {ratio} |"
                )


def main(argv=None):
    return benchmark_main(parse_args, benchmark, print_table, argv)


if __name__ == "__main__":
    main()
