"""Weight files: no pickled code runs unless allowed; safetensors round trip; missing, empty and broken files are
errors naming the file."""

import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch

import cascade_det  # noqa: F401
from cascade_det.checkpoint import SafeDetectionCheckpointer
from cascade_det.convert import main
from cascade_det.weights import UnsafeCheckpointError, save_safetensors


class CodePayload:
    """Unpickling this runs `os.system`-like code: it creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))


def test_pth_with_code_payload_is_refused_by_default_and_nothing_runs(tmp_path):
    marker = tmp_path / "payload_ran"
    path = str(tmp_path / "evil.pth")
    torch.save({"model": model().state_dict(), "extra": CodePayload(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match="Refusing to load .*evil.pth.*allow_unsafe_pickle=True"):
        SafeDetectionCheckpointer(model()).load(path)
    assert not marker.exists()
    SafeDetectionCheckpointer(model(), allow_unsafe_pickle=True).load(path)  # explicit flag: the user's call
    assert marker.exists()


def test_pkl_with_code_payload_is_refused_by_default(tmp_path):
    marker = tmp_path / "payload_ran"
    path = str(tmp_path / "evil.pkl")
    with open(path, "wb") as f:
        pickle.dump({"model": {"0.weight": np.zeros((4, 3))}, "__author__": CodePayload(str(marker))}, f)
    with pytest.raises(UnsafeCheckpointError, match=r"a reference to io.open"):
        SafeDetectionCheckpointer(model()).load(path)
    assert not marker.exists()


def test_detectron2_style_pkl_of_numpy_arrays_loads(tmp_path):
    source = model()
    weights = OrderedDict((k, v.numpy()) for k, v in source.state_dict().items())
    path = str(tmp_path / "model_final.pkl")
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "Detectron2 Model Zoo"}, f, protocol=2)
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    SafeDetectionCheckpointer(target).load(path)
    for a, b in zip(source.parameters(), target.parameters()):
        assert torch.equal(a, b)


def test_safetensors_save_and_load_round_trip(tmp_path):
    source = model()
    pth = str(tmp_path / "model.pth")
    torch.save({"model": source.state_dict(), "iteration": 7}, pth)
    out = str(tmp_path / "model.safetensors")
    main(["to-safetensors", pth, out])
    target = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    SafeDetectionCheckpointer(target).load(out)
    for a, b in zip(source.parameters(), target.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(SystemExit):  # never overwrites
        main(["to-safetensors", pth, out])
    save_safetensors(source.state_dict(), str(tmp_path / "direct.safetensors"))
    assert os.path.getsize(tmp_path / "direct.safetensors") > 0


def test_missing_weights_file_says_which_file_and_where_to_put_it(tmp_path):
    missing = str(tmp_path / "resnet50-0676ba61.pth")
    with pytest.raises(FileNotFoundError, match=f"{missing} does not exist.*put the file on this machine"):
        SafeDetectionCheckpointer(model()).load(missing)
