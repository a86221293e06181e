"""Command lines: train_net.py's (Detectron2's arguments plus dataset registration) and what the
`python -m cascade_det.<tool>` commands share (a config file, its overrides, a checkpoint)."""

import argparse
import logging
import math
import sys

from detectron2.engine import default_argument_parser

from ..data.register import register_from_args
from ..errors import add_debug_argument

__all__ = [
    "add_debug_argument",
    "add_register_arguments",
    "argument_parser",
    "config_tool_parser",
    "register_datasets",
    "tool_logging",
]

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


def probability(text: str) -> float:
    """argparse type: a finite number in [0, 1] (a score threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: expected a score between 0 and 1") from None
    if not math.isfinite(value) or not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a score between 0 and 1")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer: expected 0 or more") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text}: expected 0 or more")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected 1 or more")
    return value


def image_size(text: str) -> str:
    """argparse type: HxW (two positive integers, e.g. 800x1333), or "" for the default; returned as given."""
    parts = text.lower().split("x")
    if text and (len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxW, two positive integers such as 800x1333")
    return text


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
    parser.add_argument(
        "--classes",
        default=None,
        metavar="A,B,C",
        help="the --register-voc datasets' class names, in order (default: every class the folder's annotation "
        "files name, sorted, the same for all its splits; VOC's 20 classes in their usual order)",
    )
    return parser


def tool_logging() -> None:
    """What the `python -m cascade_det.<tool>` commands log (e.g. where the class names came from), on stderr so
    that their own output (a table, --json) stays clean; once per process."""
    log = logging.getLogger("cascade_det")
    if any(getattr(h, "_cascade_det_tool", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(name)s] %(levelname)s: %(message)s"))
    handler._cascade_det_tool = True
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def register_datasets(args) -> None:
    """Register the datasets that `args` (parsed by a parser with `add_register_arguments`) name."""
    register_from_args(
        getattr(args, "register_coco", ()), getattr(args, "register_voc", ()), getattr(args, "classes", None)
    )


def argument_parser() -> argparse.ArgumentParser:
    """Detectron2's `default_argument_parser` plus dataset registration, --debug and, for --eval-only, --show-dir."""
    parser = add_debug_argument(add_register_arguments(default_argument_parser(epilog=EPILOG)))
    parser.add_argument(
        "--show-dir",
        default="",
        metavar="DIR",
        help="with --eval-only: draw every test image with the model's detections into DIR (a new or empty folder)",
    )
    parser.add_argument(
        "--show-score-thr",
        type=probability,
        default=0.3,
        metavar="S",
        help="with --show-dir: draw the detections scoring at least S (default 0.3, as MMDetection's)",
    )
    return parser


def config_tool_parser(
    prog: str, description: str, weights: bool = False, register: bool = False
) -> argparse.ArgumentParser:
    """The parser of `python -m <prog>`: --config-file, the config overrides after the flags, with `weights`
    --weights (default: the config's own), with `register` --register-coco / --register-voc / --classes
    (`register_datasets(args)` registers them)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {prog}", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True)
    if weights:
        parser.add_argument("--weights", default=None, help="checkpoint (default: the config's train.init_checkpoint)")
    add_debug_argument(parser)
    if register:
        add_register_arguments(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help=OVERRIDES_HELP)
    return parser
