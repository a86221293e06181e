#!/usr/bin/env python
"""End-to-end parity with MMDetection: the same network, data, schedule and initial weights trained with
MMDetection 3.3.0 itself and with ours, over several seeds; box AP, AP50, AP75 and each stage's AP per framework.

    bash .ci/env.sh --with-tests python benchmarks/mmdet_parity_end_to_end.py              # 8 seeds x 600 iterations
    bash .ci/env.sh --with-tests python benchmarks/mmdet_parity_end_to_end.py --iters 50 --seeds 0   # minutes

The network is the quickstart's (Cascade R-CNN, ResNet-18-FPN of 64 channels, trained from scratch with AdamW on the
embedded shapes dataset, 8 images per iteration) under MMDetection's cascade recipe: ours is
benchmarks/mmdet_parity/cascade_rcnn_R_18_FPN_shapes.py, MMDetection's is `mmdet_config()` below (its
cascade-rcnn_r50_fpn_1x_coco.py with the same changes). Both start from the same weights (MMDetection's
initialisation, converted for ours); each seed changes the data order and the samplers. MMDetection's trained model
is evaluated by MMDetection (its CocoMetric) and, for the per-stage AP, through our code (the converted weights
predict what MMDetection predicts: tests/test_convert.py). Reported: mean and spread (standard deviation) per
framework and the difference of the means.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench_common import write_results

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OURS = os.path.join(ROOT, "benchmarks", "mmdet_parity", "cascade_rcnn_R_18_FPN_shapes.py")
METRICS = ("AP", "AP50", "AP75")
STAGES = ("stage0", "stage1", "stage2", "ensemble")


def progress(message):
    print(f"[parity {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def mmdet_config(work_dir: str, seed: int, iters: int, init: str):
    """MMDetection's cascade-rcnn_r50_fpn_1x_coco with the quickstart's network, data and schedule."""
    import mmdet_reference

    from cascade_det.data import SHAPE_CLASSES, ensure_embedded_split

    cfg = mmdet_reference.load_config("cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py")
    model = cfg.model
    model.data_preprocessor.update(mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395], bgr_to_rgb=False)
    model.backbone = dict(
        type="ResNet",
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=False,
        style="pytorch",
    )
    model.neck.update(in_channels=[64, 128, 256, 512], out_channels=64)
    model.rpn_head.update(in_channels=64, feat_channels=64)
    model.rpn_head.anchor_generator.scales = [3]  # 12, 24, 48, 96, 192 px: the quickstart's anchors
    model.roi_head.bbox_roi_extractor.out_channels = 64
    for head in model.roi_head.bbox_head:
        head.update(in_channels=64, fc_out_channels=256, num_classes=len(SHAPE_CLASSES))
    model.train_cfg.rpn.sampler.num = 128
    model.train_cfg.rpn_proposal.update(nms_pre=600, max_per_img=300)
    for stage in model.train_cfg.rcnn:
        stage.sampler.num = 32
    model.test_cfg.rpn.update(nms_pre=300, max_per_img=150)

    def dataset(split, pipeline, test):
        json_file = ensure_embedded_split(f"cascade_shapes_{split}")
        root = os.path.dirname(os.path.dirname(json_file))
        return dict(
            type="CocoDataset",
            data_root="",
            ann_file=json_file,
            data_prefix=dict(img=os.path.join(root, split)),
            metainfo=dict(classes=SHAPE_CLASSES),
            filter_cfg=dict(filter_empty_gt=not test, min_size=1),
            test_mode=test,
            pipeline=pipeline,
        )

    # Resize to 128 (a no-op on the 128 x 128 images, as our config's ResizeShortestEdge(128, 128)) sets the scale
    # factor MMDetection's test path reads.
    resize = dict(type="Resize", scale=(128, 128), keep_ratio=True)
    train_pipeline = [
        dict(type="LoadImageFromFile"),
        dict(type="LoadAnnotations", with_bbox=True),
        resize,
        dict(type="RandomFlip", prob=0.5),
        dict(type="PackDetInputs"),
    ]
    test_pipeline = [
        dict(type="LoadImageFromFile"),
        resize,
        dict(type="LoadAnnotations", with_bbox=True),
        dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
    ]
    cfg.train_dataloader = dict(
        batch_size=8,
        num_workers=1,
        persistent_workers=False,
        sampler=dict(type="InfiniteSampler", shuffle=True),
        dataset=dataset("train", train_pipeline, False),
    )
    cfg.val_dataloader = cfg.test_dataloader = dict(
        batch_size=1,
        num_workers=1,
        persistent_workers=False,
        drop_last=False,
        sampler=dict(type="DefaultSampler", shuffle=False),
        dataset=dataset("val", test_pipeline, True),
    )
    cfg.val_evaluator = cfg.test_evaluator = dict(
        type="CocoMetric", metric="bbox", ann_file=ensure_embedded_split("cascade_shapes_val")
    )
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_interval=iters + 1)
    cfg.optim_wrapper = dict(
        type="OptimWrapper",
        optimizer=dict(type="AdamW", lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0.0),
    )
    cfg.param_scheduler = [
        dict(type="LinearLR", start_factor=0.001, by_epoch=False, begin=0, end=max(1, round(50 * iters / 600))),
        dict(
            type="MultiStepLR",
            by_epoch=False,
            begin=0,
            end=iters,
            gamma=0.1,
            milestones=[round(430 * iters / 600), round(560 * iters / 600)],
        ),
    ]
    cfg.default_hooks.logger.interval = 50
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=iters, by_epoch=False)
    cfg.log_processor = dict(by_epoch=False)
    cfg.randomness = dict(seed=seed)
    cfg.work_dir = work_dir
    cfg.load_from = init
    cfg.resume = False
    return cfg


def mmdet_worker(args):
    """One MMDetection training (in its own process): trains, evaluates with its CocoMetric, writes metrics.json."""
    from mmengine.runner import Runner

    import cascade_det  # noqa: F401

    if args.init_only:  # MMDetection's initialisation of this network, the weights every run starts from
        import torch
        from mmdet.registry import MODELS

        cfg = mmdet_config(args.work_dir, 0, args.iters, None)
        torch.manual_seed(0)
        model = MODELS.build(cfg.model)
        model.init_weights()
        torch.save({"state_dict": model.state_dict(), "meta": {}}, args.init_only)
        return
    runner = Runner.from_cfg(mmdet_config(args.work_dir, args.seed, args.iters, args.init))
    runner.train()
    metrics = runner.val()
    with open(os.path.join(args.work_dir, "mmdet_metrics.json"), "w") as f:
        json.dump({k: float(v) for k, v in metrics.items()}, f, indent=1)


def train_mmdet(py, me, work, seed, init, args):
    """MMDetection trains one seed in its own process (mmdet_worker), logging beside the results."""
    command = [py, me, "--mmdet-worker", "--work-dir", work, "--seed", str(seed), "--init", init]
    run(command + ["--iters", str(args.iters)], os.path.join(args.output, f"mmdet_seed{seed}.log"))


def run(cmd, log):
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed; see {log}")


def last_eval(folder):
    with open(os.path.join(folder, "metrics.json")) as f:
        lines = [json.loads(line) for line in f if "bbox/AP" in line]
    m = lines[-1]
    out = {k: m[f"bbox/{k}"] for k in METRICS}
    out.update({f"{s}/AP": m[f"per_stage_bbox/{s}/AP"] for s in STAGES})
    return out


def summary(values):
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, spread


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--output", default=os.path.join(ROOT, "output", "mmdet_parity"))
    parser.add_argument("--json", default="", help="write the results here too (never overwritten)")
    parser.add_argument(
        "--mmdet-runs",
        default="",
        help="an earlier --output: take MMDetection's initial weights, and its trained model of every seed found "
        "there, from there instead of training them again (same --iters; seeds missing there are trained); for "
        "changes on our side only, or to add seeds",
    )
    parser.add_argument("--mmdet-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--init-only", default="", help=argparse.SUPPRESS)
    parser.add_argument("--work-dir", default="", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--init", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mmdet_worker:
        return mmdet_worker(args)
    if os.path.exists(args.output):
        raise SystemExit(f"{args.output} exists; choose another --output (nothing is overwritten)")
    os.makedirs(args.output)
    py = sys.executable
    me = os.path.abspath(__file__)
    mmdet_runs = args.mmdet_runs or args.output
    init = os.path.join(mmdet_runs, "init_mmdet.pth")
    if args.mmdet_runs:
        if not os.path.isfile(init):
            raise SystemExit(f"--mmdet-runs: {init} is missing; give the --output of an earlier run of this script")
        progress(f"MMDetection's initial weights: from {mmdet_runs}")
    else:
        progress("MMDetection's initial weights")
        run(
            [py, me, "--mmdet-worker", "--init-only", init, "--work-dir", args.output, "--iters", str(args.iters)],
            os.path.join(args.output, "init.log"),
        )
    results = {"mmdet": [], "ours": []}
    for seed in args.seeds:
        work = os.path.join(mmdet_runs, f"mmdet_seed{seed}")
        if args.mmdet_runs and os.path.isfile(os.path.join(work, "mmdet_metrics.json")):
            if not os.path.isfile(os.path.join(work, f"iter_{args.iters}.pth")):
                raise SystemExit(
                    f"--mmdet-runs: {work} holds no model of {args.iters} iterations (iter_{args.iters}.pth)"
                )
            progress(f"seed {seed}: MMDetection's run from {work}")
        else:
            work = os.path.join(args.output, f"mmdet_seed{seed}")
            progress(f"seed {seed}: MMDetection trains")
            train_mmdet(py, me, work, seed, init, args)
        with open(os.path.join(work, "mmdet_metrics.json")) as f:
            own = json.load(f)
        progress(f"seed {seed}: its model evaluated per stage through ours")
        checkpoint = os.path.join(work, f"iter_{args.iters}.pth")
        per_stage = os.path.join(args.output, f"mmdet_seed{seed}_per_stage")
        run(
            [
                py,
                "train_net.py",
                "--eval-only",
                "--config-file",
                OURS,
                f"train.init_checkpoint={checkpoint}",
                f"train.output_dir={per_stage}",
            ],
            per_stage + ".log",
        )
        m = last_eval(per_stage)
        m["mmdet_own_AP"] = own["coco/bbox_mAP"] * 100
        results["mmdet"].append(m)
        progress(f"seed {seed}: ours trains")
        out = os.path.join(args.output, f"ours_seed{seed}")
        run(
            [
                py,
                "train_net.py",
                "--config-file",
                OURS,
                f"train.init_checkpoint={init}",
                f"train.seed={seed}",
                f"train.max_iter={args.iters}",
                f"train.output_dir={out}",
            ],
            out + ".log",
        )
        results["ours"].append(last_eval(out))
        progress(
            f"seed {seed}: MMDetection AP {m['AP']:.1f} (its own metric {m['mmdet_own_AP']:.1f}), "
            f"ours {results['ours'][-1]['AP']:.1f}"
        )
    keys = list(METRICS) + [f"{s}/AP" for s in STAGES]
    print(f"{len(args.seeds)} seeds x {args.iters} iterations; mean ± spread (standard deviation) of box AP (%)")
    print("| metric | MMDetection 3.3.0 | ours | difference of the means | within the spread |")
    print("|---|---|---|---|---|")
    report = {"iters": args.iters, "seeds": args.seeds, "runs": results, "summary": {}}
    for key in keys:
        (m_mean, m_spread), (o_mean, o_spread) = (summary([r[key] for r in results[f]]) for f in ("mmdet", "ours"))
        difference = o_mean - m_mean
        within = abs(difference) <= max(m_spread, o_spread)
        report["summary"][key] = {"mmdet": [m_mean, m_spread], "ours": [o_mean, o_spread], "difference": difference}
        print(
            f"| {key} | {m_mean:.1f} ± {m_spread:.1f} | {o_mean:.1f} ± {o_spread:.1f} | {difference:+.1f} | "
            f"{'yes' if within else 'no'} |"
        )
    # A seed gives both frameworks the same images in the same order (their samplers draw one permutation from it),
    # so the per-seed differences are paired.
    per_seed = [o["AP"] - m["AP"] for m, o in zip(results["mmdet"], results["ours"])]
    mean, spread = summary(per_seed)
    error = spread / len(per_seed) ** 0.5
    report["paired_AP_difference"] = {"per_seed": per_seed, "mean": mean, "standard_error": error}
    for name in ("mmdet", "ours"):
        print(f"AP per seed, {name}: " + ", ".join(f"{r['AP']:.1f}" for r in results[name]))
    print(f"Paired by seed (same images, same order): ours - MMDetection = {mean:+.1f} ± {error:.1f} (standard error)")
    own = [r["mmdet_own_AP"] for r in results["mmdet"]]
    print(
        f"MMDetection's own CocoMetric AP of its models: {statistics.mean(own):.1f} (through ours: "
        f"{statistics.mean(r['AP'] for r in results['mmdet']):.1f})"
    )
    if args.json:
        write_results(report, args.json)
    return report


if __name__ == "__main__":
    main()
