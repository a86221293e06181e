"""One safe door for weights: after `import cascade_det`, no code a pickle carries runs through any loader a user
can reach (ours, Detectron2's DetectionCheckpointer and DefaultPredictor, fvcore's Checkpointer, Detectron2's
proposal files), in any pickle container (.pkl, torch's zip .pth, torch's legacy .pth, a plain pickle named
.pth), unless the documented flag opts in; each refusal names the file, says "unsafe" and names the flag. A weights
file that cannot be used (missing, empty, truncated, unsafe, a URL) is refused before the output dir is touched."""

import contextlib
import os
import pickle

import pytest
import torch
from fvcore.common.checkpoint import Checkpointer

import cascade_det  # noqa: F401  (the door is installed on import)
from cascade_det.errors import MissingFileError
from cascade_det.weights import UNSAFE_ENV, UnsafeCheckpointError, WeightsFileError

from detectron2.checkpoint import DetectionCheckpointer

from .conftest import LAZY, TINY, run_main


class _Payload:
    """Unpickling this creates the folder `marker`: evidence that code from the file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def _write(kind: str, folder, marker: str) -> str:
    contents = {"model": {"weight": _Payload(marker)}, "__author__": "someone"}
    path = os.path.join(folder, {"pkl": "evil.pkl", "plain": "evil_plain.pth"}.get(kind, f"evil_{kind}.pth"))
    if kind in ("pkl", "plain"):
        with open(path, "wb") as f:
            pickle.dump(contents, f, protocol=4)
    else:
        torch.save(contents, path, _use_new_zipfile_serialization=(kind == "zip"))
    return path


KINDS = ["pkl", "zip", "legacy", "plain"]


def _refused(error: BaseException, path: str) -> None:
    message = str(error)
    assert isinstance(error, UnsafeCheckpointError), message
    assert path in message and "unsafe" in message and "makedirs" in message  # names what it refused
    assert UNSAFE_ENV in message and "allow_unsafe_pickle" in message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("loader", ["detectron2", "fvcore"])
def test_detectron2s_and_fvcores_checkpointers_refuse_a_pickle_that_carries_code(tmp_path, kind, loader):
    marker = str(tmp_path / "ran")
    path = _write(kind, tmp_path, marker)
    checkpointer = (DetectionCheckpointer if loader == "detectron2" else Checkpointer)(torch.nn.Linear(2, 2))
    with pytest.raises(UnsafeCheckpointError) as refusal:
        checkpointer.load(path)
    _refused(refusal.value, path)
    assert not os.path.exists(marker)


def test_default_predictor_of_a_yacs_config_refuses_a_pickle_that_carries_code(tmp_path):
    from cascade_det.engine import load_config

    from detectron2.engine import DefaultPredictor

    marker = str(tmp_path / "ran")
    path = _write("pkl", tmp_path, marker)
    cfg = load_config("configs/Shapes/cascade_rcnn_R_18_FPN.yaml", ["MODEL.WEIGHTS", path, "MODEL.DEVICE", "cpu"])
    with pytest.raises(UnsafeCheckpointError) as refusal:
        DefaultPredictor(cfg)
    _refused(refusal.value, path)
    assert not os.path.exists(marker)


def test_the_environment_flag_opts_in_for_detectron2s_own_checkpointer(tmp_path, monkeypatch):
    marker = str(tmp_path / "ran")
    path = _write("pkl", tmp_path, marker)
    monkeypatch.setenv(UNSAFE_ENV, "1")
    # What it unpickled is no state dict (an error may follow); the point is that it was unpickled.
    with contextlib.suppress(Exception):
        DetectionCheckpointer(torch.nn.Linear(2, 2)).load(path)
    assert os.path.isdir(marker)


def test_a_default_trainers_yacs_flag_opts_in_for_its_checkpointer(tmp_path):
    from cascade_det.config import add_cascade_config

    from detectron2.config import get_cfg

    class Trainer:  # what DefaultTrainer hands its checkpointer: itself, with its cfg
        def __init__(self, cfg):
            self.cfg = cfg

        def state_dict(self):
            return {}

    marker = str(tmp_path / "ran")
    path = _write("pkl", tmp_path, marker)
    cfg = add_cascade_config(get_cfg())
    with pytest.raises(UnsafeCheckpointError):  # the flag is off by default
        DetectionCheckpointer(torch.nn.Linear(2, 2), trainer=Trainer(cfg)).load(path)
    cfg.MODEL.ALLOW_UNSAFE_PICKLE = True
    with contextlib.suppress(Exception):
        DetectionCheckpointer(torch.nn.Linear(2, 2), trainer=Trainer(cfg)).load(path)
    assert os.path.isdir(marker)


def test_detectron2s_proposal_files_are_read_without_running_code(tmp_path):
    import numpy as np

    from detectron2.data.build import load_proposals_into_dataset

    good = tmp_path / "proposals.pkl"
    with open(good, "wb") as f:
        pickle.dump({"ids": [7], "boxes": [np.zeros((1, 4))], "objectness_logits": [np.zeros(1)]}, f)
    (loaded,) = load_proposals_into_dataset([{"image_id": 7}], str(good))
    assert loaded["proposal_boxes"].shape == (1, 4)
    marker = str(tmp_path / "ran")
    path = _write("pkl", tmp_path, marker)
    with pytest.raises(UnsafeCheckpointError, match="unsafe"):
        load_proposals_into_dataset([{"image_id": 7}], path)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("kind", ["unsafe", "empty", "truncated", "url", "folder"])
def test_an_unusable_init_checkpoint_is_refused_before_the_output_dir_is_touched(tmp_path, kind):
    marker = str(tmp_path / "ran")
    if kind == "unsafe":
        path = _write("zip", tmp_path, marker)
    elif kind == "url":
        path = "https://example.invalid/model_final.pth"
    elif kind == "folder":
        path = str(tmp_path)
    else:
        path = str(tmp_path / f"{kind}.pth")
        torch.save({"model": {"w": torch.ones(1000)}}, path)
        with open(path, "r+b") as f:
            f.truncate(0 if kind == "empty" else os.path.getsize(path) // 2)
    out = tmp_path / "out"
    error = run_main(
        "--config-file", LAZY, f"train.output_dir={out}", "train.max_iter=1", *TINY, f"train.init_checkpoint={path}"
    )
    expected = {"unsafe": UnsafeCheckpointError, "url": MissingFileError, "folder": MissingFileError}
    assert isinstance(error, expected.get(kind, WeightsFileError)), error
    assert path in str(error) and not out.exists()
    assert not os.path.exists(marker)
    if kind == "url":
        assert "never downloads" in str(error)
