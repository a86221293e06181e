"""Evaluation results in `metrics.json`, where training's JSONWriter puts its numbers."""

import os
from typing import Dict

from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils.events import EventStorage, JSONWriter

__all__ = ["write_eval_metrics"]


def write_eval_metrics(output_dir: str, results: Dict, iteration: int) -> str:
    """Append evaluation results to `output_dir/metrics.json` as one JSON line in the format training's JSONWriter
    uses (flattened "bbox/AP" keys), so --eval-only runs leave their numbers where training does. Only appends."""
    path = os.path.join(output_dir, "metrics.json")
    with EventStorage(iteration) as storage:
        storage.put_scalars(**flatten_results_dict(results), smoothing_hint=False)
        writer = JSONWriter(path)
        writer.write()
        writer.close()
    return path
