#!/usr/bin/env python
"""Sampling parity with MMDetection, at one state of training: the end-to-end comparison's network
(benchmarks/mmdet_parity_end_to_end.py) built by MMDetection 3.3.0 and by ours with the same weights, given the same
batches of the embedded shapes dataset; each framework samples its anchors and RoIs at random as in training, many
times. Reported per loss term and per stage: the mean over all draws in each framework, its standard error, and the
difference in standard errors; and the RoIs each stage draws (candidates, positives among them, sampled foreground
and background per image).

    bash .ci/env.sh --with-tests python benchmarks/mmdet_parity_sampling.py --checkpoint DIR/mmdet_seed0/iter_600.pth

(DIR: an --output of mmdet_parity_end_to_end.py.) The one-step test (tests/test_mmdet_training_parity.py) shows that
both frameworks compute the same losses and gradients from the same samples; this shows that they draw their samples
alike: a difference in *which* RoIs a stage trains on (how many candidates it draws from, how many positives it
keeps) would show here and not there. BN statistics are not updated (momentum 0), so every draw sees one model.
"""

import argparse
import os
import statistics

import numpy as np
import torch
from bench_common import write_results
from mmdet_parity_end_to_end import OURS, mmdet_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STAGES = 3


def build_models(checkpoint: str):
    """(MMDetection's model, ours), both in training mode with `checkpoint`'s weights and frozen BN statistics."""
    from mmdet.registry import MODELS

    from cascade_det.checkpoint import SafeDetectionCheckpointer
    from cascade_det.engine import Run, load_config

    from detectron2.config import instantiate

    mmdet = MODELS.build(mmdet_config(os.path.join(ROOT, "output", "unused"), 0, 1, None).model)
    mmdet.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"])
    ours = instantiate(Run.of(load_config(OURS, ["train.device=cpu"])).cfg.model)
    checkpointer = SafeDetectionCheckpointer(ours)
    checkpointer.load(checkpoint)
    if checkpointer.last_load_report["missing"]:
        raise SystemExit(f"{checkpoint} lacks weights of ours: {checkpointer.last_load_report['missing'][:5]}")
    for module in list(mmdet.modules()) + list(ours.modules()):
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0  # batch statistics in the forward pass, running statistics left as loaded
    return mmdet.train(), ours.train()


def shapes_batches(num_batches: int, batch_size: int = 8, seed: int = 0):
    """`num_batches` batches (images, targets) of training images of the embedded shapes dataset, chosen at random
    without augmentation, in mmdet_reference.py's batch form (BGR images; per image XYXY boxes and classes)."""
    import cv2

    from detectron2.data import DatasetCatalog

    dicts = [d for d in DatasetCatalog.get("cascade_shapes_train") if d["annotations"]]
    rng = np.random.default_rng(seed)
    for _ in range(num_batches):
        images, targets = [], []
        for i in rng.choice(len(dicts), batch_size, replace=False):
            d = dicts[i]
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in d["annotations"])], np.float32)
            images.append(cv2.imread(d["file_name"]))
            targets.append((boxes, np.array([a["category_id"] for a in d["annotations"]])))
        yield images, targets


class Recorder:
    """Per-stage counts of each framework's RoI sampling, recorded as the samplers run."""

    def __init__(self, mmdet, num_stages: int):
        import cascade_det.modeling.cascade_roi_heads as heads

        self.values = {}
        self.start_batch(0, 1)
        for stage, sampler in enumerate(mmdet.roi_head.bbox_sampler):
            sampler.sample = self._mmdet_sampler(sampler.sample, stage)
        self._num_stages = num_stages
        subsample = heads.subsample_labels

        def our_subsample(labels, num_samples, positive_fraction, bg_label):
            stage = self._calls // self._images % self._num_stages
            self._calls += 1
            self.add("ours", stage, "candidates", len(labels))
            self.add("ours", stage, "positives", int(((labels >= 0) & (labels != bg_label)).sum()))
            fg, bg = subsample(labels, num_samples, positive_fraction, bg_label)
            self.add("ours", stage, "sampled fg", len(fg))
            self.add("ours", stage, "sampled bg", len(bg))
            return fg, bg

        heads.subsample_labels = our_subsample

    def start_batch(self, batch: int, images: int):
        self._batch, self._calls, self._images = batch, 0, images

    def add(self, framework, stage, name, value):
        self.values.setdefault((framework, stage, name), []).append((self._batch, float(value)))

    def _mmdet_sampler(self, sample, stage):
        def recorded(assign_result, pred_instances, gt_instances, **kwargs):
            num_gt = len(gt_instances.bboxes)
            self.add("mmdet", stage, "candidates", len(pred_instances.priors) + num_gt)
            # its sampler adds the ground truth as RoIs (positives) after assignment
            self.add("mmdet", stage, "positives", int((assign_result.gt_inds > 0).sum()) + num_gt)
            result = sample(assign_result, pred_instances, gt_instances, **kwargs)
            self.add("mmdet", stage, "sampled fg", len(result.pos_inds))
            self.add("mmdet", stage, "sampled bg", len(result.neg_inds))
            return result

        return recorded


def losses_of_both(mmdet, ours, batch, seed: int):
    """One random draw of each framework's training losses on `batch` (images, targets): ({our name: value},
    {our name: MMDetection's value of the same term})."""
    import mmdet_reference

    from detectron2.utils.events import EventStorage

    images, targets = batch
    with torch.no_grad():
        torch.manual_seed(seed)
        theirs = mmdet_reference.training_losses(mmdet, images, targets)
        torch.manual_seed(seed)
        with EventStorage():
            mine = ours(mmdet_reference.detectron2_inputs(images, targets, "BGR"))  # both read BGR here
    return (
        {k: float(v) for k, v in mine.items()},
        {k: float(theirs[mmdet_reference.LOSS_NAMES[k]]) for k in mine},
    )


def compare(mmdet, ours):
    """mmdet, ours: [(batch, value)]. Returns {"mmdet": [mean, standard error], "ours": [...], "z": the mean
    difference over batches in standard errors of that difference}: paired by batch, since both frameworks see the
    same batches (what varies within a batch is the sampling alone)."""

    def per_batch(pairs):
        groups = {}
        for batch, value in pairs:
            groups.setdefault(batch, []).append(value)
        return {batch: statistics.mean(values) for batch, values in groups.items()}

    def mean_and_error(values):
        return [
            statistics.mean(values),
            statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0,
        ]

    m, o = per_batch(mmdet), per_batch(ours)
    differences = [o[b] - m[b] for b in m]
    mean, error = mean_and_error(differences)
    return {
        "mmdet": mean_and_error([v for _, v in mmdet]),
        "ours": mean_and_error([v for _, v in ours]),
        "z": mean / error if error > 0 else 0.0,
    }


def print_row(label, result, digits):
    (m, m_err), (o, o_err) = result["mmdet"], result["ours"]
    print(
        f"| {label} | {m:.{digits}f} ± {m_err:.{digits}f} | {o:.{digits}f} ± {o_err:.{digits}f} | {result['z']:+.1f} |"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="an MMDetection checkpoint of the end-to-end network",
    )
    parser.add_argument("--batches", type=int, default=20, help="batches of 8 training images")
    parser.add_argument("--draws", type=int, default=3, help="random draws per batch and framework")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="", help="write the results here too (never overwritten)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f"--checkpoint {args.checkpoint}: no such file")
    torch.set_num_threads(args.threads)
    import mmdet_reference

    mmdet_reference.load_config()  # MMDetection's modules registered, its kernels provided
    mmdet, ours = build_models(args.checkpoint)
    recorder = Recorder(mmdet, STAGES)
    losses = {"ours": {}, "mmdet": {}}
    for b, batch in enumerate(shapes_batches(args.batches)):
        for draw in range(args.draws):
            recorder.start_batch(b, len(batch[0]))
            mine, theirs = losses_of_both(mmdet, ours, batch, seed=1000 * b + draw)
            for framework, values in (("ours", mine), ("mmdet", theirs)):
                for name, value in values.items():
                    losses[framework].setdefault(name, []).append((b, value))
    report = {
        "checkpoint": args.checkpoint,
        "batches": args.batches,
        "draws": args.draws,
        "losses": {},
        "rois": {},
    }
    print(f"{args.batches} batches x {args.draws} draws; mean ± standard error; z: the difference (ours - MMDetection)")
    print("in standard errors, paired by batch (|z| > 3: a difference beyond chance)")
    print("| loss | MMDetection 3.3.0 | ours | z |")
    print("|---|---|---|---|")
    for name in losses["ours"]:
        report["losses"][name] = compare(losses["mmdet"][name], losses["ours"][name])
        print_row(name, report["losses"][name], 4)
    print("\n| RoIs per image | MMDetection 3.3.0 | ours | z |")
    print("|---|---|---|---|")
    for stage in range(STAGES):
        for name in ("candidates", "positives", "sampled fg", "sampled bg"):
            key = f"stage{stage}/{name}"
            report["rois"][key] = compare(
                recorder.values[("mmdet", stage, name)],
                recorder.values[("ours", stage, name)],
            )
            print_row(key, report["rois"][key], 2)
    if args.json:
        write_results(report, args.json)
    return report


if __name__ == "__main__":
    main()
