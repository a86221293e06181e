"""`Predictor`: a trained model from its config and weights, one call from images to detections.

    from cascade_det import Predictor
    predictor = Predictor("configs/Shapes/cascade_rcnn_R_18_FPN.py",
                          "output/shapes_cascade_rcnn_R_18_FPN/model_final.pth")
    instances = predictor("image.jpg")                       # Detectron2 Instances, in the image's pixels
    instances, stages = predictor(["a.jpg", "b.jpg"], per_stage=True)[0]   # batched; each stage's own detections
    predictor.as_dict(instances)                             # boxes, scores, classes, class names (and masks) as numpy

Works with a LazyConfig `.py` and a yacs `.yaml` alike. Images are paths, or arrays (H, W, 3) uint8 in BGR order
(OpenCV's; say `image_format="RGB"` for RGB arrays), or lists of them. Grayscale (H, W) / (H, W, 1) and BGRA
(H, W, 4) arrays, 16-bit arrays (as OpenCV's IMREAD_UNCHANGED gives them) and float arrays of 0..255 values are
converted; bool arrays, float arrays of 0..1 values, arrays with NaN or infinity, and empty ones are refused with
what is expected (`as_uint8_image`); the config's test-time resize and the model's
input format are applied as in evaluation; detections come back in each image's own pixels.
"""

import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Instances

from .checkpoint import SafeDetectionCheckpointer
from .engine.load_checks import check_load_report
from .engine.model_metadata import inference_identity, model_description
from .engine.run import ConfigValueError, Run
from .engine.setup import load_config
from .errors import InputError, MissingFileError
from .modeling import CascadeRCNNROIHeads, split_stage_detections
from .weights import model_metadata_of

__all__ = ["Predictor", "as_uint8_image"]

Image = Union[str, os.PathLike, np.ndarray]


def as_uint8_image(image) -> np.ndarray:
    """`image` as an (H, W, 3) uint8 array of 0..255 values, channels as given; anything that is not a picture in
    that sense is an InputError saying what is expected."""
    expects = "an image array (H, W, 3) of uint8 values 0..255 (as cv2.imread gives it), or a path"
    if image is None:
        raise InputError(
            f"Predictor: the image is None (cv2.imread returns None for a file it cannot read): expected {expects}"
        )
    array = np.asarray(image)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise InputError(f"Predictor: the image is an array of {array.dtype}: expected {expects}")
    if array.size == 0:
        raise InputError(f"Predictor: the image is empty (shape {array.shape}): expected {expects}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(f"Predictor: the image has shape {array.shape}: expected {expects}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)  # grayscale
    elif array.shape[2] == 4:
        array = array[:, :, :3]  # alpha dropped, as cv2.imread(IMREAD_COLOR) does
    if array.dtype == bool:
        raise InputError(f"Predictor: the image is a bool array (a mask?): expected {expects}")
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)  # OpenCV's reading of a 16-bit image as 8-bit
    if not np.isfinite(array).all():
        raise InputError(f"Predictor: the image holds NaN or infinite values: expected {expects}")
    low, high = float(array.min()), float(array.max())
    if np.issubdtype(array.dtype, np.floating) and high <= 1.0 and high > 0:
        raise InputError(
            f"Predictor: the image is a {array.dtype} array of values in [{low:g}, {high:g}], which looks like a 0..1 "
            f"scale: expected 0..255. Pass (image * 255).round().astype(np.uint8)."
        )
    if low < 0 or high > 255:
        raise InputError(
            f"Predictor: the image is a {array.dtype} array of values in [{low:g}, {high:g}]: expected {expects}"
        )
    return np.round(array).astype(np.uint8)


class Predictor:
    """A model of `config` (a path to a `.py` / `.yaml`, or a loaded config) with `weights` (a checkpoint file; ""
    for the config's own train.init_checkpoint / MODEL.WEIGHTS), on `device` (default: CUDA if available), keeping
    detections scoring at least `score_thresh` (default: the config's). With `tta`, every call runs the model under
    test-time augmentation (the config's `test.aug` / `TEST.AUG` sizes and flip; Detectron2's merging)."""

    def __init__(
        self,
        config,
        weights: Optional[str] = None,
        device: Optional[str] = None,
        score_thresh: Optional[float] = None,
        overrides: Sequence[str] = (),
        tta: bool = False,
    ):
        cfg = load_config(str(config), overrides) if isinstance(config, (str, os.PathLike)) else config
        # One process, per-stage detections asked per call (not built in as per-stage evaluation does).
        run = Run.of(cfg, world_size=1)
        run = run.replace(device=device or ("cuda" if torch.cuda.is_available() else "cpu"), per_stage_eval=False)
        weights = weights if weights is not None else run.settings.weights
        if not weights:
            raise ConfigValueError(f"Predictor needs weights: give a checkpoint file (or set {run.key('weights')})")
        checkpointer = SafeDetectionCheckpointer(None, allow_unsafe_pickle=run.settings.allow_unsafe_pickle)
        # What the checkpoint says the model is: its number of classes where the config leaves it unset, and the
        # class names it was trained with.
        stored = model_metadata_of(checkpointer.read(weights), weights)
        run, self.class_names, self.metadata = inference_identity(run, stored, weights)
        self.run = run
        self.model = checkpointer.model = run.build_model().eval()
        checkpointer.load(weights)
        check_load_report(checkpointer.last_load_report, run, weights, eval_only=True)
        heads = self.model.roi_heads
        self.is_cascade = isinstance(heads, CascadeRCNNROIHeads)
        self.num_stages = heads.num_cascade_stages if self.is_cascade else 1
        if score_thresh is not None:
            predictors = (
                heads.box_predictor if isinstance(heads.box_predictor, torch.nn.ModuleList) else [heads.box_predictor]
            )
            for predictor in predictors:
                predictor.test_score_thresh = float(score_thresh)
        self.input_format, self.augmentations = run.test_preprocessing()
        self.tta_model = run.with_tta(self.model) if tta else None

    def model_metadata(self) -> Dict:
        """What this model is, as its checkpoints and exported files carry it: class names, number of classes,
        input format, test-time resize."""
        return model_description(self.run, self.class_names)

    def __call__(self, images: Union[Image, List[Image]], per_stage: bool = False, image_format: str = "BGR"):
        """Detections of one image (Instances) or of a list (a list of them, run as one batch). With `per_stage`
        (cascade models): (the model's detections, [stage 0's own, stage 1's own, ...]) per image."""
        single = not isinstance(images, (list, tuple))
        inputs = [self._input(image, image_format) for image in ([images] if single else images)]
        if per_stage and not self.is_cascade:
            raise InputError("per_stage=True needs a cascade model (CascadeRCNNROIHeads)")
        heads = self.model.roi_heads
        if self.is_cascade:
            heads.return_stage_detections = per_stage
        try:
            with torch.no_grad():
                outputs = (self.tta_model or self.model)(inputs)
        finally:
            if self.is_cascade:
                heads.return_stage_detections = False
        results = []
        for out in outputs:
            own, stages = split_stage_detections(out["instances"].to("cpu"), self.num_stages)
            results.append((own, stages) if per_stage else own)
        return results[0] if single else results

    def as_dict(self, instances: Instances) -> Dict[str, np.ndarray]:
        """Plain arrays: boxes (R, 4) XYXY in pixels, scores (R,), classes (R,), class_names (R,), and masks
        (R, H, W) bool for a mask model."""
        classes = instances.pred_classes.numpy()
        out = {
            "boxes": instances.pred_boxes.tensor.numpy(),
            "scores": instances.scores.numpy(),
            "classes": classes,
            "class_names": np.array([self.class_names[c] if c < len(self.class_names) else str(c) for c in classes]),
        }
        if instances.has("pred_masks"):
            out["masks"] = instances.pred_masks.numpy().astype(bool)
        return out

    def _input(self, image: Image, image_format: str) -> Dict:
        if isinstance(image, (str, os.PathLike)):
            if not os.path.isfile(image):
                raise MissingFileError(f"Predictor: image {image} does not exist")
            array = utils.read_image(str(image), format=self.input_format)
        else:
            array = as_uint8_image(image)
            if image_format.upper() not in ("BGR", "RGB"):
                raise InputError(f"image_format={image_format!r}: expected 'BGR' or 'RGB'")
            if image_format.upper() != self.input_format:
                array = array[:, :, ::-1]
        height, width = array.shape[:2]
        aug_input = T.AugInput(np.ascontiguousarray(array))
        T.AugmentationList(self.augmentations)(aug_input)
        tensor = torch.as_tensor(np.ascontiguousarray(aug_input.image.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}
