"""train_net.py's command line: Detectron2's arguments plus dataset registration."""

import argparse

from detectron2.engine import default_argument_parser

__all__ = ["argument_parser"]

EPILOG = """
Your own data, without code: register it on the command line (repeatable; every launched process registers it)
and select it in the config:
  python train_net.py --register-coco my_train train.json images/ --register-coco my_val val.json images/ \\
      --config-file configs/Custom/cascade_rcnn_R_50_FPN.py \\
      dataloader.train.dataset.names=my_train dataloader.test.dataset.names=my_val train.init_checkpoint=R50.pth
Flags go before the config overrides (key=value for .py configs, KEY VALUE pairs for .yaml ones).
Under torchrun or srun (more than one task) each process is one rank: --num-gpus is not used.
"""


def argument_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser(epilog=EPILOG)
    parser.add_argument(
        "--register-coco",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "JSON", "IMAGE_ROOT"),
        help="register a COCO-json dataset as NAME before the config is read (repeatable)",
    )
    parser.add_argument(
        "--register-voc",
        nargs=3,
        action="append",
        default=[],
        metavar=("NAME", "DIR", "SPLIT"),
        help="register a Pascal-VOC-format folder's SPLIT as NAME (repeatable)",
    )
    return parser
