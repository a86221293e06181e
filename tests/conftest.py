"""Shared fixtures. Every test runs on the CPU with 2 threads (the MMDetection parity tests' tolerances hold for the
sums of 2 threads); the embedded dataset is generated once per session into a temporary folder
(CASCADE_DET_DATASETS), so tests never touch the user's cache, its val split cut to VAL_IMAGES images."""

import os
import shutil
import sys
import tempfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The benchmarks' modules (the MMDetection reference models, the parity scripts' configs) import each other as
# scripts do, by name; the tests that compare with MMDetection import them the same way.
sys.path.append(os.path.join(ROOT, "benchmarks"))
# The threads of every test and of the runs it starts (the MMDetection parity tests' tolerances are for 2 threads).
THREADS = 2
torch.set_num_threads(THREADS)
# Set before any test module imports cascade_det: the embedded datasets' metadata records this folder.
DATASETS_DIR = tempfile.mkdtemp(prefix="cascade_det_datasets_")
os.environ["CASCADE_DET_DATASETS"] = DATASETS_DIR


# The test session's embedded val split keeps its first VAL_IMAGES images (of 200): the many train_net, tool and
# evaluation tests evaluate on it, and they test the plumbing, not the AP (README's quickstart measures that).
VAL_IMAGES = 24


def first_images(coco: dict, count: int) -> dict:
    """A COCO-format dict with only the first `count` images of `coco` and their annotations."""
    images = coco["images"][:count]
    ids = {im["id"] for im in images}
    return {**coco, "images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}


def _trim_embedded_val(count: int) -> None:
    import json

    from cascade_det.data import ensure_embedded_split

    path = ensure_embedded_split("cascade_shapes_val")
    with open(path) as f:
        data = first_images(json.load(f), count)
    with open(path, "w") as f:
        json.dump(data, f)


@pytest.fixture(scope="session", autouse=True)
def embedded_datasets_dir():
    _trim_embedded_val(VAL_IMAGES)
    yield DATASETS_DIR
    shutil.rmtree(DATASETS_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def repo_root():
    return ROOT


QUICKSTART = "configs/Shapes/cascade_rcnn_R_18_FPN.py"
# train_net.py arguments for a 2-iteration quickstart run at batch 2 without evaluation during training
TWO_ITERATIONS = [
    "--config-file",
    QUICKSTART,
    "train.max_iter=2",
    "train.eval_period=0",
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
]


@pytest.fixture(scope="session")
def quickstart_weights(tmp_path_factory) -> str:
    """A checkpoint of the quickstart model as built (seeded initial weights, untrained): at the configs' score
    threshold such a model already gives ~100 detections per image, which is what the deploy tests compare."""
    import cascade_det  # noqa: F401
    from cascade_det.engine import load_config

    from detectron2.config import instantiate

    torch.manual_seed(0)
    model = instantiate(load_config(os.path.join(ROOT, QUICKSTART), ["train.device=cpu"]).model)
    path = str(tmp_path_factory.mktemp("weights") / "model_init.pth")
    torch.save({"model": model.state_dict(), "iteration": 0}, path)
    return path


def small_cascade_mask_model():
    """The quickstart model plus one mask head per stage, as configs/COCO/cascade_mask_rcnn_* add them, sized for
    its 64-channel FPN."""
    import cascade_det  # noqa: F401
    from cascade_det.engine import load_config

    from detectron2.config import LazyConfig, instantiate
    from detectron2.layers import ShapeSpec

    cfg = load_config(os.path.join(ROOT, QUICKSTART), ["train.device=cpu"])
    masks = LazyConfig.load(os.path.join(ROOT, "configs/common/models/mask_head.py"))
    masks.mask_head.update(input_shape=ShapeSpec(channels=64, height=14, width=14), conv_dims=[32, 32], num_classes=4)
    cfg.model.roi_heads.update(
        mask_in_features=masks.mask_in_features, mask_pooler=masks.mask_pooler, mask_head=[masks.mask_head] * 3
    )
    torch.manual_seed(0)
    return instantiate(cfg.model).eval()


@pytest.fixture(scope="session")
def trees_model(tmp_path_factory):
    """A model trained (2 iterations) through train_net.py on a generated VOC folder (`tests/data/user_data.py`:
    classes Tree, Bush, Rock): (its output dir, the VOC folder). Its checkpoints carry the class names."""
    from .data.user_data import write_voc

    voc = write_voc(str(tmp_path_factory.mktemp("trees_voc")))
    out = str(tmp_path_factory.mktemp("trees_run") / "run")
    proc = run_train_net(
        *("--register-voc", "trees_train", voc, "train", "--register-voc", "trees_val", voc, "val"),
        *TWO_ITERATIONS,
        "dataloader.train.dataset.names=trees_train",
        "dataloader.test.dataset.names=trees_val",
        "dataloader.test.num_workers=0",
        "model.roi_heads.num_classes=null",
        f"train.output_dir={out}",
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    return out, voc


@pytest.fixture(scope="session")
def shapes_image() -> str:
    """The path of one image (128 x 128) of the embedded validation set."""
    import cascade_det  # noqa: F401

    from detectron2.data import DatasetCatalog

    return DatasetCatalog.get("cascade_shapes_val")[0]["file_name"]


def run_train_net(*args, **kwargs):
    """Run train_net.py as a user would; returns the CompletedProcess (stdout+stderr in .stdout). A run of several
    processes gets a free port (--dist-url auto): Detectron2's default port is one per user, so two test sessions
    at once would share it."""
    if "--num-gpus" in args and "--dist-url" not in args:
        args = ("--dist-url", "auto", *args)
    return run_python(os.path.join(ROOT, "train_net.py"), *args, **kwargs)


def run_together(commands, envs, timeout=600):
    """Start the processes at once (as a cluster would, or to overlap their start-up), wait for all, reading their
    output as it comes (a full pipe would stall a process); returns their (returncode, output), in order."""
    import concurrent.futures
    import subprocess

    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for cmd, env in zip(commands, envs)
    ]
    try:
        with concurrent.futures.ThreadPoolExecutor(len(procs)) as pool:
            outputs = list(pool.map(lambda p: p.communicate(timeout=timeout)[0], procs))
        return [(p.returncode, output) for p, output in zip(procs, outputs)]
    finally:
        for p in procs:
            p.kill()


def run_python(*args, timeout=600, num_threads=THREADS):
    """Run `python ARGS` in the repository root as a user would; returns the CompletedProcess (stdout+stderr in
    .stdout)."""
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS=str(num_threads))
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


# The device the tests marked `device` run on: the CPU here; the device kit (benchmarks/device_kit/run_kit.py) runs
# them with CASCADE_DET_TEST_DEVICE=cuda on a lent GPU.
TEST_DEVICE = os.environ.get("CASCADE_DET_TEST_DEVICE", "cpu")


def pytest_configure(config):
    config.addinivalue_line("markers", "device: runs on CASCADE_DET_TEST_DEVICE (the device kit runs these on CUDA)")
    # pycocotools (mask rasterisation, used by Detectron2's polygon masks) on numpy 2: not ours, and harmless.
    config.addinivalue_line(
        "filterwarnings", "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    )


def pytest_report_header(config):
    """Which Detectron2 this run tests; with CASCADE_DET_D2=main (.ci/env.sh) it must be the main snapshot."""
    import detectron2

    main = os.sep + "detectron2-main" + os.sep in detectron2.__file__
    if os.environ.get("CASCADE_DET_D2") == "main" and not main:
        raise pytest.UsageError(f"CASCADE_DET_D2=main, but detectron2 comes from {detectron2.__file__}")
    return f"detectron2: {'main snapshot' if main else detectron2.__version__} ({os.path.dirname(detectron2.__file__)})"


def pytest_collection_finish(session):
    # CI must never pass by running nothing (pytest's own exit code 5 would be easy to swallow).
    if not session.items:
        raise pytest.UsageError("No tests were collected: check the path and -k/-m filters.")
