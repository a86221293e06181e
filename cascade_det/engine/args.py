"""Command lines: train_net.py's (Detectron2's arguments plus dataset registration) and what the
`python -m cascade_det.<tool>` commands share (a config file, its overrides, a checkpoint)."""

import argparse

from detectron2.engine import default_argument_parser

__all__ = ["add_register_arguments", "argument_parser", "config_tool_parser"]

OVERRIDES_HELP = "config overrides (key=value, or KEY VALUE for yacs)"

EPILOG = """
Your own data, without code: register it on the command line (repeatable; every launched process registers it)
and select it in the config:
  python train_net.py --register-coco my_train train.json images/ --register-coco my_val val.json images/ \\
      --config-file configs/Custom/cascade_rcnn_R_50_FPN.py \\
      dataloader.train.dataset.names=my_train dataloader.test.dataset.names=my_val train.init_checkpoint=R50.pth
Flags go before the config overrides (key=value for .py configs, KEY VALUE pairs for .yaml ones).
Under torchrun or srun (more than one task) each process is one rank: --num-gpus is not used.
"""


def add_register_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--register-coco NAME JSON IMAGE_ROOT and --register-voc NAME DIR SPLIT, each repeatable
    (`cascade_det.data.register.register_from_args` registers what they name)."""
    for flag, metavar, help in (
        ("--register-coco", ("NAME", "JSON", "IMAGE_ROOT"), "register a COCO-json dataset as NAME"),
        ("--register-voc", ("NAME", "DIR", "SPLIT"), "register a Pascal-VOC-format folder's SPLIT as NAME"),
    ):
        parser.add_argument(
            flag,
            nargs=3,
            action="append",
            default=[],
            metavar=metavar,
            help=f"{help} before the config is read (repeatable)",
        )
    return parser


def argument_parser() -> argparse.ArgumentParser:
    return add_register_arguments(default_argument_parser(epilog=EPILOG))


def config_tool_parser(prog: str, description: str, weights: bool = False) -> argparse.ArgumentParser:
    """The parser of `python -m <prog>`: --config-file, the config overrides after the flags, and with `weights`
    --weights (default: the config's own)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {prog}", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    if weights:
        parser.add_argument("--weights", default=None, help="checkpoint (default: the config's train.init_checkpoint)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help=OVERRIDES_HELP)
    return parser
