"""Files the tools write: never over an existing file, and whole or not at all."""

import errno
import os
import tempfile

import cv2
import numpy as np

from .errors import OutputExistsError, OutputPathError, UnreadableFileError
from .weights import atomic_write

__all__ = ["check_writable", "next_free_path", "refuse_existing", "write_png"]


def refuse_existing(target: str) -> None:
    """Refuse to write `target` when something is there already (nothing the user made is overwritten)."""
    if os.path.exists(target):
        raise OutputExistsError(f"{target} exists; not overwriting it (choose another --output)")


def write_png(target: str, image_bgr: np.ndarray) -> None:
    """Write the image as a PNG, whole or not at all (an interrupted run leaves no half-written file)."""
    refuse_existing(target)
    ok, encoded = cv2.imencode(".png", image_bgr)
    if not ok:
        raise UnreadableFileError(f"cannot encode the drawing for {target} as PNG")
    with atomic_write(target) as f:
        f.write(encoded.tobytes())


def next_free_path(folder: str, pattern: str) -> str:
    """`folder/pattern.format(k)` for the first k = 1, 2, ... that does not exist (nothing is created here), e.g.
    `next_free_path(out, "config_resume_{}.yaml")`."""
    k = 1
    while os.path.exists(os.path.join(folder, pattern.format(k))):
        k += 1
    return os.path.join(folder, pattern.format(k))


def check_writable(folder: str, key: str) -> None:
    """`folder` (made later if it does not exist) can hold this run's files: it is not a file, and it (or the nearest
    folder above it that exists) can be written by this user. Probed with a temporary file that is removed at once,
    so a read-only mount is found too."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputPathError(f"{key}={folder} is a file, not a folder: set another output dir ({key}=...)")
    probe = os.path.abspath(folder)
    while not os.path.isdir(probe):
        parent = os.path.dirname(probe)
        if os.path.exists(probe) or parent == probe:  # a file on the way down
            raise OutputPathError(f"{key}={folder}: {probe} is a file, so the folder cannot be made there")
        probe = parent
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        reason = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise OutputPathError(
            f"{key}={folder}: cannot write into {probe} ({reason}): choose a folder you can write ({key}=...)"
        ) from e
