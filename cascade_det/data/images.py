"""Images read as the eye sees them, whatever their bit depth or mode.

Detectron2 reads images with Pillow (`detection_utils.read_image`: EXIF orientation applied, then
`convert_PIL_to_numpy`). Pillow's `convert("RGB")` of a 16-bit or 32-bit grayscale image (modes "I;16", "I",
"F": 16-bit PNG and TIFF) clips every value above 255, so a 16-bit image trains and predicts as all white.
`to_8bit` maps those modes to 8-bit grayscale as OpenCV reads them (the high byte of 16-bit values; float images
clipped to 0..255); palette, grayscale with alpha, CMYK and RGBA images are already converted right by Pillow.
`patch_detectron2_reader` (applied when `cascade_det` is imported) puts it in front of Detectron2's conversion, so
training, evaluation, `Predictor` and `demo` (which all read through `read_image`) see the same picture.
"""

import numpy as np
from PIL import Image

__all__ = ["patch_detectron2_reader", "to_8bit"]

_DEEP_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_patched = False


def to_8bit(image: Image.Image) -> Image.Image:
    """`image` as 8-bit grayscale ("L") when its mode holds more than 8 bits per pixel; other images unchanged."""
    if image.mode not in _DEEP_MODES:
        return image
    values = np.asarray(image)
    if image.mode == "F":
        values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0).clip(0, 255)
    elif image.mode.startswith("I;16") or values.max(initial=0) > 255:
        values = values.astype(np.int64).clip(0, 65535) >> 8  # OpenCV's reading of a 16-bit image as 8-bit
    return Image.fromarray(np.ascontiguousarray(values.astype(np.uint8)), "L")


def patch_detectron2_reader() -> None:
    """Detectron2's `convert_PIL_to_numpy` (what `read_image` ends with) first maps deep images to 8 bits."""
    global _patched
    if _patched:
        return
    _patched = True
    from detectron2.data import detection_utils

    original = detection_utils.convert_PIL_to_numpy

    def convert_PIL_to_numpy(image, format):
        return original(to_8bit(image), format)

    convert_PIL_to_numpy.__doc__ = original.__doc__
    convert_PIL_to_numpy.__wrapped__ = original
    detection_utils.convert_PIL_to_numpy = convert_PIL_to_numpy
