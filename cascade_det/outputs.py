"""Files the tools write: never over an existing file, and whole or not at all."""

import os

import cv2
import numpy as np

from .errors import OutputExistsError, UnreadableFileError
from .weights import atomic_write

__all__ = ["next_free_path", "refuse_existing", "write_png"]


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
