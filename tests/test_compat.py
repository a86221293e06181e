"""Each compat fix makes one Detectron2 0.6 code path work on this stack; each test runs that path."""

import logging
import random

import pytest
import torch

import cascade_det  # noqa: F401  (applies the fixes)
from cascade_det import compat


def test_detectron2_layers_import_and_cpp_ops_raise_a_clear_error():
    import detectron2.layers  # fails with ImportError without the _C stand-in
    from detectron2 import _C

    with pytest.raises(compat.CppOpUnavailableError, match="C\\+\\+ op.*pure Python"):
        _ = _C.nms_rotated
    assert "not built" in _C.get_compiler_version()  # collect_env (logged by default_setup) calls it
    assert hasattr(detectron2.layers, "ROIAlign")


def test_detectron2_data_transforms_use_bilinear_for_removed_pillow_linear():
    from PIL import Image

    from detectron2.data.transforms import ExtentTransform

    assert ExtentTransform(src_rect=(0, 0, 4, 4), output_size=(2, 2)).interp == Image.BILINEAR


def test_class_histogram_runs_with_numpy_2(monkeypatch):  # np.int in Detectron2 0.6; main no longer uses it
    from detectron2.data import build

    dicts = [{"annotations": [{"category_id": 0, "iscrowd": 0}, {"category_id": 1, "iscrowd": 0}]}]
    logged = []
    monkeypatch.setattr(build, "log_first_n", lambda level, message, **kwargs: logged.append(str(message)))
    build.print_instances_class_histogram(dicts, ["a", "b"])  # uses np.int: AttributeError without the fix
    assert len(logged) == 1 and "Distribution of instances among all 2 categories" in logged[0]
    assert "total" in logged[0]


def test_map_dataset_falls_back_to_another_sample_when_mapper_skips_one():
    from detectron2.data.common import MapDataset

    dataset = MapDataset(list(range(10)), lambda x: None if x == 3 else x)
    assert dataset[3] != 3 and dataset[3] in range(10)  # TypeError (random.sample of a set) without the fix


def test_lr_scheduler_hook_saves_and_restores_torch2_schedulers():
    from detectron2.engine import hooks

    def make():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)

    optimizer, scheduler = make()
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    state = hooks.LRScheduler(optimizer, scheduler).state_dict()
    assert state.get("last_epoch") == 5  # {} without the fix: resume would restart the schedule

    optimizer2, scheduler2 = make()
    hooks.LRScheduler(optimizer2, scheduler2).load_state_dict(state)
    assert scheduler2.last_epoch == 5


def test_coco_evaluation_uses_faster_coco_eval_without_cpp_extension():
    from faster_coco_eval import COCOeval_faster

    from detectron2.evaluation import coco_evaluation

    assert issubclass(coco_evaluation.COCOeval_opt, COCOeval_faster)


def test_the_fast_coco_eval_takes_string_image_ids_as_voc_datasets_have_them():
    import contextlib
    import io

    from pycocotools.coco import COCO

    from detectron2.evaluation import coco_evaluation

    gt = COCO()
    gt.dataset = {
        "images": [{"id": "2019_YELL_0001", "height": 50, "width": 50}],
        "annotations": [
            {"id": 1, "image_id": "2019_YELL_0001", "category_id": 1, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "tree"}],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": "2019_YELL_0001", "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.9}])
        evaluation = coco_evaluation.COCOeval_opt(gt, dt, "bbox")  # faster-coco-eval's C++ takes ints only
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == 1.0


def test_ddp_wrapper_passes_no_device_ids_for_cpu_models(monkeypatch):
    from detectron2.engine import defaults
    from detectron2.utils import comm

    seen = {}

    class FakeDDP:
        def __init__(self, module, **kwargs):
            seen.update(kwargs)

    monkeypatch.setattr(comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(defaults, "DistributedDataParallel", FakeDDP)
    defaults.create_ddp_model(torch.nn.Linear(2, 2), broadcast_buffers=False)
    assert seen["device_ids"] is None  # [local_rank] without the fix, which DDP refuses for CPU modules


def test_detectron2_trainer_checkpoints_keep_the_inner_trainers_state():
    from detectron2.engine import DefaultTrainer

    # 0.6 leaves the optimizer out of DefaultTrainer's checkpoints; main saves it; with the fix both do, once.
    assert "state_dict" in vars(DefaultTrainer) and "load_state_dict" in vars(DefaultTrainer)

    class Inner:
        def state_dict(self):
            return {"optimizer": "state"}

        def load_state_dict(self, state):
            self.loaded = state

    trainer = DefaultTrainer.__new__(DefaultTrainer)
    trainer._hooks, trainer.iter, trainer._trainer = [], 7, Inner()
    state = trainer.state_dict()
    assert state["_trainer"] == {"optimizer": "state"} and state["iteration"] == 7
    trainer.load_state_dict(state)
    assert trainer._trainer.loaded == {"optimizer": "state"}


def test_apply_is_idempotent_and_logs_each_fix_at_debug_level(caplog):
    from detectron2.data.common import MapDataset

    compat.apply()
    compat.apply()
    assert MapDataset(list(range(3)), lambda x: None if x == 0 else x)[0] in (1, 2)
    assert random.Random(0).random() == random.Random(0).random()
    # Each fix decides whether this Detectron2 needs it; a fresh application logs each decision once.
    saved = set(compat._applied)
    compat._applied.clear()
    with caplog.at_level(logging.DEBUG, logger="cascade_det.compat"):
        compat._applied.update(n for n in saved if n != "missing_cpp_extension")
        compat.apply()
    assert [r.getMessage() for r in caplog.records] == [
        "compat missing_cpp_extension: not needed here"  # the stand-in is already registered
    ]
    assert compat._applied == saved == {fix.__name__ for fix in compat.FIXES}


def test_anchor_grid_is_made_without_the_meshgrid_warning():
    import warnings

    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator

    generator = DefaultAnchorGenerator(sizes=[[8]], aspect_ratios=[[1.0]], strides=[8], offset=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (anchors,) = generator([torch.zeros(1, 1, 3, 4)])
    centers = anchors.get_centers()
    assert centers[:, 0].tolist() == [4.0, 12.0, 20.0, 28.0] * 3
    assert centers[:, 1].tolist() == [4.0] * 4 + [12.0] * 4 + [20.0] * 4


def test_importing_cascade_det_and_detectron2_prints_no_warning():
    import subprocess
    import sys

    code = "import cascade_det, detectron2.model_zoo, detectron2.modeling, detectron2.engine, detectron2.data"
    out = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "", out.stderr


def test_detectron2_export_and_analysis_import_without_caffe2():
    from detectron2.export import TracingAdapter, scripting_with_instances
    from detectron2.utils.analysis import FlopCountAnalysis

    assert callable(TracingAdapter) and callable(scripting_with_instances) and callable(FlopCountAnalysis)
