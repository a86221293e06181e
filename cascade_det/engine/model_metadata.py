"""A model knows itself: what training writes beside the weights, and what inference reads back.

Training writes into every checkpoint (`SafeDetectionCheckpointer.model_metadata`, under
`cascade_det.weights.MODEL_METADATA_KEY`) plain values only:

    {"num_classes": 3, "thing_classes": ["Tree", "Bush", "Rock"], "input_format": "BGR",
     "test_resize": {"short_edge_length": 800, "max_size": 1333}, "datasets": ["trees_train"]}

`Predictor` (and so `demo` and `export`) and `analyze` take the number of classes from it where the config leaves
`num_classes` unset, and the class names from it before the config's datasets: the checkpoint says what the model
was trained on; a config derived from the COCO one names COCO's classes whatever the model learned.
"""

import logging
from typing import Dict, List, Optional, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from .run import ConfigValueError, Run

__all__ = ["dataset_class_names", "inference_identity", "model_description", "run_model_metadata", "test_resize"]

logger = logging.getLogger("cascade_det")


def test_resize(run: Run) -> Optional[Dict[str, int]]:
    """The config's test-time resize as {"short_edge_length", "max_size"} (pixels), None where it has none."""
    for resize in run.test_preprocessing()[1]:
        if hasattr(resize, "short_edge_length"):
            short = resize.short_edge_length
            return {
                "short_edge_length": int(short[0] if isinstance(short, (list, tuple)) else short),
                "max_size": int(resize.max_size),
            }
    return None


def dataset_class_names(run: Run) -> Tuple[List[str], str]:
    """(class names, dataset name) of the first of the config's test (else training) datasets that is registered
    and names its classes; ([], "") if none does."""
    for name in list(run.settings.test_datasets) + list(run.settings.train_datasets):
        if name in DatasetCatalog.list():
            classes = MetadataCatalog.get(name).get("thing_classes", None)
            if classes:
                return list(classes), name
    return [], ""


def model_description(run: Run, class_names: List[str]) -> Dict:
    """The model of `run` with `class_names` as checkpoints and exported files describe it: num_classes,
    thing_classes (empty unless there is one name per class), input_format, test_resize."""
    num_classes = run.settings.num_classes
    return {
        "num_classes": num_classes,
        "thing_classes": list(class_names) if len(class_names) == num_classes else [],
        "input_format": run.test_preprocessing()[0],
        "test_resize": test_resize(run),
    }


def run_model_metadata(run: Run) -> Dict:
    """What the checkpoints of `run` carry about the model (plain values: see the module docstring)."""
    return {**model_description(run, dataset_class_names(run)[0]), "datasets": list(run.settings.train_datasets)}


def inference_identity(run: Run, stored: Optional[Dict], weights: str = "") -> Tuple[Run, List[str], Metadata]:
    """For inference with `weights` whose stored description is `stored` (`model_metadata_of`, or None): the run
    with its number of classes filled in where the config leaves it unset, the class names, and the Detectron2
    `Metadata` to draw with. Logs where the class names came from; a config and a checkpoint that disagree on the
    number of classes are left to the weight loading's check."""
    key = run.key("num_classes")
    names, dataset = dataset_class_names(run)
    stored_names = list(stored["thing_classes"]) if stored else []
    if run.settings.num_classes is None:
        if stored:
            run = run.replace(
                num_classes=stored["num_classes"], note=f"{key} = {stored['num_classes']}, from {weights}"
            )
        elif names:
            run = run.replace(num_classes=len(names), note=f"{key} = {len(names)}, from the dataset {dataset}")
        else:
            raise ConfigValueError(
                f"{key} is not set, {weights or 'the weights'} carries no model description (it was not written by "
                "cascade_det's training) and the config's datasets are not registered: set "
                f"{key}=N, or register the data (--register-coco / --register-voc)"
            )
    num_classes = run.settings.num_classes
    for name, configured in (("input_format", run.test_preprocessing()[0]), ("test_resize", test_resize(run))):
        if stored and stored.get(name) not in (None, configured):
            logger.warning(
                "%s was trained with %s=%s; this config uses %s (the config's is applied)",
                weights,
                name,
                stored[name],
                configured,
            )
    if stored_names and len(stored_names) == num_classes:
        if names and names != stored_names:
            logger.warning(
                "Class names from %s (%s), not from the config's dataset %s (%s)",
                weights,
                ", ".join(stored_names[:5]),
                dataset,
                ", ".join(names[:5]),
            )
        else:
            logger.info("Class names from %s", weights)
        return run, stored_names, Metadata(name=weights, thing_classes=stored_names)
    if names and len(names) == num_classes:
        logger.info("Class names from the dataset %s", dataset)
        return run, names, MetadataCatalog.get(dataset)
    logger.warning(
        "No class names for the model's %d classes (neither %s nor the config's datasets name them): shown as numbers",
        num_classes,
        weights or "the weights",
    )
    return run, [], Metadata(name="unnamed", thing_classes=[str(i) for i in range(num_classes)])
