"""`--eval-only --show-dir DIR` (MMDetection's `tools/test.py --show-dir`): every test image drawn with the model's
detections, as a Detectron2 evaluator beside the metrics' ones (one pass over the data)."""

import os
from typing import Set

from detectron2.data import MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils.visualizer import Visualizer

from ..modeling import split_stage_detections
from ..outputs import write_png

__all__ = ["DrawPredictions"]


class DrawPredictions(DatasetEvaluator):
    """Draws each image of `dataset_name` with the model's own detections scoring at least `score_threshold`
    (Detectron2's Visualizer, the dataset's class names) into `folder/<image file stem>.png`; an image whose stem
    was drawn already gets its image id appended. Writes nothing else and returns no metrics."""

    def __init__(self, dataset_name: str, folder: str, score_threshold: float = 0.3):
        self.metadata = MetadataCatalog.get(dataset_name)
        self.folder = folder
        self.score_threshold = score_threshold
        self._names: Set[str] = set()

    def reset(self):
        os.makedirs(self.folder, exist_ok=True)

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if "instances" not in out:
                continue
            instances = split_stage_detections(out["instances"].to("cpu"))[0]
            instances = instances[instances.scores >= self.score_threshold]
            image = utils.read_image(inp["file_name"], format="RGB")
            drawn = Visualizer(image, self.metadata).draw_instance_predictions(instances).get_image()
            stem = os.path.splitext(os.path.basename(inp["file_name"]))[0]
            name = stem if stem not in self._names else f"{stem}_{inp.get('image_id', len(self._names))}"
            self._names.add(name)
            write_png(os.path.join(self.folder, f"{name}.png"), drawn[:, :, ::-1])

    def evaluate(self):
        return {}
