#!/usr/bin/env python
"""Train or evaluate a Cascade R-CNN (or any Detectron2 model) from a LazyConfig .py or a yacs .yaml.

    python train_net.py --config-file configs/Shapes/cascade_rcnn_R_18_FPN.py
    python train_net.py --num-gpus 8 --config-file configs/COCO/cascade_rcnn_R_50_FPN_1x.py
    python train_net.py --config-file CONFIG --eval-only train.init_checkpoint=model.pth   # LazyConfig
    python train_net.py --config-file CONFIG.yaml --eval-only MODEL.WEIGHTS model.pth      # yacs
Without CUDA, --num-gpus N starts N CPU processes over gloo.
"""
import logging
import os

import cascade_det  # noqa: F401  (compat fixes and registration, before anything else of Detectron2 runs)
from cascade_det.checkpoint import SafeDetectionCheckpointer
from cascade_det.engine import CascadeTrainer, RunSettings, launch, setup, write_eval_metrics
from detectron2.engine import default_argument_parser
from detectron2.utils import comm

logger = logging.getLogger("cascade_det")


def main(args):
    cfg = setup(args)
    settings = RunSettings.from_config(cfg)
    if args.eval_only:
        if not settings.weights and not args.resume:
            raise ValueError(
                "--eval-only needs weights: add train.init_checkpoint=PATH (LazyConfig) or MODEL.WEIGHTS PATH (yacs)"
            )
        settings.check_weights()
        model = CascadeTrainer.build_model(cfg)
        checkpointer = SafeDetectionCheckpointer(
            model, save_dir=settings.output_dir, allow_unsafe_pickle=settings.allow_unsafe_pickle
        )
        checkpoint = checkpointer.resume_or_load(settings.weights, resume=args.resume)
        results = CascadeTrainer.test(cfg, model)
        if comm.is_main_process():
            path = write_eval_metrics(settings.output_dir, results, checkpoint.get("iteration", 0))
            logger.info("Evaluation metrics appended to %s", path)
        return results

    trainer = CascadeTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    if comm.is_main_process():
        out = os.path.abspath(settings.output_dir)
        logger.info(
            "Done. Model: %s; metrics: %s; TensorBoard events: %s",
            os.path.join(out, "model_final.pth"), os.path.join(out, "metrics.json"), out,
        )
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
