"""Nothing a user made is overwritten: the output-dir decisions run before anything is written into it."""

import json
import os

from cascade_det.engine.run_dir import OutputDirError

from .conftest import LAZY, TINY, assert_untouched, log_of, run_main, snapshot


def test_new_run_into_a_finished_run_is_refused_and_touches_nothing(run_copy):
    before = snapshot(run_copy)
    error = run_main("--config-file", LAZY, f"train.output_dir={run_copy}", "train.max_iter=2", *TINY)
    assert isinstance(error, OutputDirError)
    assert f"{run_copy} already holds a training run" in str(error) and "--resume" in str(error)
    assert "model_final.pth" in str(error) and "train.output_dir=" in str(error)
    assert_untouched(run_copy, before)
    assert snapshot(run_copy).keys() == before.keys()  # not even a new log line or config copy


def test_new_run_into_a_failed_runs_files_is_refused_instead_of_mixing_metrics(tmp_path):
    out = tmp_path / "failed"
    out.mkdir()
    (out / "metrics.json").write_text('{"iteration": 0, "total_loss": 5.0}\n')
    (out / "log.txt").write_text("an earlier run that crashed at iteration 0\n")
    before = snapshot(str(out))
    for flags in ([], ["--resume"]):
        error = run_main(*flags, "--config-file", LAZY, f"train.output_dir={out}", "train.max_iter=2", *TINY)
        assert isinstance(error, OutputDirError), flags
        assert "stopped before its first checkpoint" in str(error) and "metrics.json" in str(error)
        assert_untouched(str(out), before)


def test_resume_in_an_empty_dir_says_there_is_nothing_to_resume_and_starts(tmp_path):
    out = str(tmp_path / "fresh")
    assert run_main("--resume", "--config-file", LAZY, f"train.output_dir={out}", "train.max_iter=1", *TINY) is None
    assert f"--resume: nothing to resume in {out} (no checkpoint): starting a new run" in log_of(out)
    assert os.path.isfile(os.path.join(out, "model_final.pth"))


def test_eval_only_writes_a_folder_of_its_own_and_only_appends_metrics(run_copy):
    before = snapshot(run_copy)
    weights = os.path.join(run_copy, "model_final.pth")
    for k in (1, 2):
        error = run_main(
            "--eval-only",
            "--config-file",
            LAZY,
            f"train.output_dir={run_copy}",
            f"train.init_checkpoint={weights}",
            *TINY,
        )
        assert error is None, error
        folder = os.path.join(run_copy, "inference", f"eval_{k}")
        for name in ("coco_instances_results.json", "config.yaml", "log.txt", "per_stage_ap.json"):
            assert os.path.isfile(os.path.join(folder, name)), (k, name)
    assert_untouched(run_copy, before, appended=("metrics.json",))
    with open(os.path.join(run_copy, "metrics.json")) as f:
        lines = [json.loads(line) for line in f]
    assert sum("bbox/AP" in m for m in lines) == 3  # training's evaluation and the two eval-only runs


def test_resume_writes_its_config_beside_the_first_runs(run_copy):
    before = snapshot(run_copy)
    error = run_main("--resume", "--config-file", LAZY, f"train.output_dir={run_copy}", "train.max_iter=5", *TINY)
    assert error is None, error
    assert os.path.isfile(os.path.join(run_copy, "config_resume_1.yaml"))
    # The run goes on: its log and metrics grow, its newest checkpoint is replaced by the newer one (atomically).
    assert_untouched(
        run_copy,
        {k: v for k, v in before.items() if k not in ("last_checkpoint", "model_final.pth")},
        appended=("metrics.json", "log.txt"),
    )
    assert "Resuming at iteration 4" in log_of(run_copy)
