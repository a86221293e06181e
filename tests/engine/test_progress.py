"""Progress bars with an ETA on a terminal, and the log unchanged when the output is not one."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from cascade_det.engine.progress import interactive, with_progress

from ..conftest import ROOT, TWO_ITERATIONS


def test_loaders_are_wrapped_only_on_a_terminal(monkeypatch):
    loader = [1, 2, 3]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert not interactive() and with_progress(loader, "x") is loader
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    wrapped = with_progress(loader, "x")
    assert interactive() and len(wrapped) == 3 and list(wrapped) == loader


def test_training_on_a_terminal_shows_a_bar_with_the_iterations_and_eta(tmp_path):
    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a new pty is 0 columns wide
    args = [*TWO_ITERATIONS, f"train.output_dir={tmp_path / 'run'}", "train.final_eval=False"]
    env = dict(os.environ, OMP_NUM_THREADS="2", COLUMNS="120")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train_net.py"), *args], cwd=ROOT, env=env, stdout=child, stderr=child
    )
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(parent, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=600) == 0, output[-3000:]
    text = output.decode(errors="replace")
    assert "training: 100%" in text and "2/2" in text and "loss=" in text, text[-3000:]
    # The log file is what it was without a terminal: no bar in it.
    with open(tmp_path / "run" / "log.txt") as f:
        assert "training: 100%" not in f.read()
