#!/usr/bin/env python
"""Train or evaluate a Cascade R-CNN (or any Detectron2 model) from a LazyConfig .py or a yacs .yaml.

    python train_net.py --config-file configs/Shapes/cascade_rcnn_R_18_FPN.py
    python train_net.py --num-gpus 8 --config-file configs/COCO/cascade_rcnn_R_50_FPN_1x.py
    python train_net.py --config-file CONFIG --eval-only train.init_checkpoint=model.pth   # LazyConfig
    python train_net.py --config-file CONFIG.yaml --eval-only MODEL.WEIGHTS model.pth      # yacs
    python train_net.py --register-coco NAME JSON IMAGE_ROOT --config-file configs/Custom/cascade_rcnn_R_50_FPN.py ...
    torchrun --nproc_per_node 8 train_net.py --config-file CONFIG          # or srun: each process is one rank
Without CUDA, --num-gpus N starts N CPU processes over gloo.
"""

import logging
import os

import cascade_det  # noqa: F401  (compat fixes and registration, before anything else of Detectron2 runs)
from cascade_det.engine import CascadeTrainer, argument_parser, launch, setup
from cascade_det.errors import exit_on_user_error

from detectron2.utils import comm

logger = logging.getLogger("cascade_det")


def main(args):
    plan = setup(args)  # every check that can refuse the run happens here, before anything is written
    if args.eval_only:
        return CascadeTrainer.evaluate_checkpoint(plan)
    trainer = CascadeTrainer(plan.run)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    if comm.is_main_process():
        out = os.path.abspath(plan.run.settings.output_dir)
        logger.info(
            "Done. Model: %s; metrics: %s; TensorBoard events: %s",
            os.path.join(out, "model_final.pth"),
            os.path.join(out, "metrics.json"),
            out,
        )
    return results


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    # A mistake in what was given (cascade_det.Error) is printed as its message, without a traceback (--debug).
    exit_on_user_error(launch, main, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url, args=(args,))
