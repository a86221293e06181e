"""A user's mistake is one or two lines naming the cause and the fix, exit status 2, no traceback (unless --debug
or CASCADE_DET_DEBUG asks); the same from train_net.py, from a tool, and from a run of several processes."""

import sys

import pytest

from cascade_det.errors import ConfigKeyError, Error, exit_on_user_error

from .conftest import QUICKSTART, run_python, run_train_net


def short(proc, *expected):
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout, proc.stdout[-3000:]
    for text in expected:
        assert text in proc.stdout, (text, proc.stdout[-3000:])
    assert "--debug or CASCADE_DET_DEBUG=1" in proc.stdout


def test_a_bad_config_key_is_its_message_without_a_traceback(tmp_path):
    args = ["--config-file", QUICKSTART, f"train.output_dir={tmp_path / 'out'}", "train.max_iters=3"]
    short(run_train_net(*args), "ConfigKeyError: Config key 'train.max_iters' does not exist", "train.max_iter?")


def test_yacs_mistakes_name_the_key_and_where_it_came_from():
    from cascade_det.engine import load_config

    yaml = "configs/Shapes/cascade_rcnn_R_18_FPN.yaml"
    with pytest.raises(ConfigKeyError, match="the overrides: Non-existent key: SOLVER.MAX_ITERS"):
        load_config(yaml, ["SOLVER.MAX_ITERS", "3"])
    with pytest.raises(Error, match="the overrides: .*SOLVER.MAX_ITER"):
        load_config(yaml, ["SOLVER.MAX_ITER", "abc"])


def test_a_refused_output_dir_in_a_run_of_two_processes_is_short_too(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text("{}\n")
    proc = run_train_net("--num-gpus", "2", "--config-file", QUICKSTART, f"train.output_dir={out}", num_threads=1)
    short(proc, "OutputDirError", "stopped before its first checkpoint", "WorkerStoppedError")


def test_tools_report_user_errors_the_same_way(tmp_path):
    proc = run_python("-m", "cascade_det.plot_metrics", str(tmp_path))
    short(proc, "MissingFileError:", "metrics.json does not exist")


def test_exit_on_user_error_passes_bugs_through_and_honours_the_environment(monkeypatch, capsys):
    def mistake():
        raise ConfigKeyError("train.x: no such key")

    with pytest.raises(SystemExit) as exit_info:
        exit_on_user_error(mistake)
    assert exit_info.value.code == 2 and "ConfigKeyError: train.x: no such key" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):  # a bug is not a user's mistake: its traceback stays
        exit_on_user_error(lambda: 1 / 0)
    monkeypatch.setattr(sys, "argv", ["train_net.py", "--debug"])
    with pytest.raises(Error):  # --debug: the traceback
        exit_on_user_error(mistake)
    monkeypatch.setattr(sys, "argv", ["train_net.py"])
    monkeypatch.setenv("CASCADE_DET_DEBUG", "1")
    with pytest.raises(Error):
        exit_on_user_error(mistake)
    assert str(ConfigKeyError("plain")) == "plain"  # not KeyError's quoted form
