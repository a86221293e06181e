"""What the reliability tests share: a finished training run to break things in, runs of train_net's `main` inside the
test process (fast: no interpreter start per case), and byte-level snapshots of an output dir."""

import logging
import os
import shutil
import sys
from typing import Dict, Optional

import pytest

import cascade_det  # noqa: F401  (before Detectron2)

from ..conftest import ROOT

sys.path.insert(0, ROOT)

LAZY = "configs/Shapes/cascade_rcnn_R_18_FPN.py"
# A few iterations at batch 2, evaluated on 8 images: these tests check what happens around training, not what it
# learns. (The tiny test set is registered in this process: runs in a subprocess use no test set.)
TINY_TEST_SET = "cascade_shapes_val_first8"
TINY = [
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
    "train.eval_period=0",
    "train.log_period=1",
    f"dataloader.test.dataset.names={TINY_TEST_SET}",
]


def _register_tiny_test_set():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if TINY_TEST_SET in DatasetCatalog.list():
        return
    DatasetCatalog.register(TINY_TEST_SET, lambda: DatasetCatalog.get("cascade_shapes_val")[:8])
    full = MetadataCatalog.get("cascade_shapes_val")
    # No json_file: Detectron2's evaluator then builds the ground truth of these 8 images from their dicts.
    MetadataCatalog.get(TINY_TEST_SET).set(
        thing_classes=full.thing_classes,
        evaluator_type="coco",
        thing_dataset_id_to_contiguous_id=full.thing_dataset_id_to_contiguous_id,
    )


_register_tiny_test_set()


def snapshot(folder: str) -> Dict[str, bytes]:
    """The bytes of every file below `folder`, by relative path (compared whole: hashing the checkpoints took longer
    than the refusals these tests check)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def assert_untouched(folder: str, before: Dict[str, bytes], appended: tuple = ()) -> None:
    """Every file that was in `folder` is still there with the same bytes; a file named in `appended` may have grown,
    but only at its end (its first bytes are the old file)."""
    for name, old in before.items():
        path = os.path.join(folder, name)
        assert os.path.isfile(path), f"{name} was removed"
        with open(path, "rb") as f:
            data = f.read()
        if name in appended:
            data = data[: len(old)]
        assert data == old, f"{name} was modified"


def clone_run(source: str, target: str) -> str:
    """A copy of a run folder to break things in: checkpoints hard-linked (they are only ever replaced, never
    written in place), everything else copied."""

    def copy(src, dst):
        if src.endswith(".pth"):
            os.link(src, dst)
        else:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=copy)
    return target


def private(path: str) -> str:
    """Make `path` a file of its own (not a hard link shared with the fixture) before changing it in place."""
    with open(path, "rb") as f:
        data = f.read()
    os.remove(path)
    with open(path, "wb") as f:
        f.write(data)
    return path


def run_main(*argv: str) -> Optional[BaseException]:
    """train_net.py's `main` on `argv`, in this process; returns the exception it raised (None on success). The
    loggers it sets up are taken down again, so that runs stay apart."""
    import train_net
    from cascade_det.engine import argument_parser

    from detectron2.utils import logger as d2_logger

    names = ("detectron2", "fvcore", "cascade_det")
    handlers = {name: list(logging.getLogger(name).handlers) for name in names}
    args = argument_parser().parse_args(list(argv))
    try:
        train_net.main(args)
        return None
    except Exception as e:  # noqa: BLE001 (the caller checks what it was)
        return e
    finally:
        for name in names:
            log = logging.getLogger(name)
            for handler in [h for h in log.handlers if h not in handlers[name]]:
                log.removeHandler(handler)
                handler.close()
        d2_logger.setup_logger.cache_clear()


def log_of(folder: str) -> str:
    with open(os.path.join(folder, "log.txt")) as f:
        return f.read()


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> str:
    """A finished 4-iteration quickstart run: checkpoints at iterations 1 and 3 and model_final, metrics.json,
    log.txt, config.yaml, TensorBoard events, and its evaluation in inference/iter_0000003/."""
    out = str(tmp_path_factory.mktemp("finished") / "run")
    error = run_main(
        "--config-file",
        LAZY,
        f"train.output_dir={out}",
        "train.max_iter=4",
        "train.checkpointer.period=2",
        "train.checkpointer.max_to_keep=null",
        *TINY,
    )
    assert error is None, error
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> str:
    return clone_run(finished_run, str(tmp_path / "run"))
