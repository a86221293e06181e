"""Evaluation results in `metrics.json`, where training's JSONWriter puts its numbers; every line valid JSON.

Detectron2's JSONWriter writes Python's `json.dumps`, which spells a missing metric (COCO's -1, e.g. APl of a
dataset without large objects) as the bare token `NaN`: not JSON, so `jq`, JavaScript and strict parsers reject the
file. `strict_json_lines` makes a JSONWriter write NaN and infinities as `null` instead.
"""

import json
import math
import os
from typing import Dict

from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils.events import EventStorage, JSONWriter

__all__ = ["json_safe", "strict_json_lines", "write_eval_metrics"]


def json_safe(value):
    """`value` with every float that is not finite replaced by None (JSON's null), in nested dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class _StrictJSONLines:
    """A text file (JSONWriter's handle) whose written JSON lines have NaN and infinities as null."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, text: str) -> int:
        lines = [
            json.dumps(json_safe(json.loads(line)), sort_keys=True) if line.strip() else line
            for line in text.split("\n")
        ]
        return self._handle.write("\n".join(lines))

    def __getattr__(self, name):
        return getattr(self._handle, name)


def strict_json_lines(writer: JSONWriter) -> JSONWriter:
    """`writer`, writing NaN and infinities as null (valid JSON lines); returns it."""
    if not isinstance(writer._file_handle, _StrictJSONLines):
        writer._file_handle = _StrictJSONLines(writer._file_handle)
    return writer


def write_eval_metrics(output_dir: str, results: Dict, iteration: int) -> str:
    """Append evaluation results to `output_dir/metrics.json` as one JSON line in the format training's JSONWriter
    uses (flattened "bbox/AP" keys; a metric that could not be computed as null), so --eval-only runs leave their
    numbers where training does. Only appends."""
    path = os.path.join(output_dir, "metrics.json")
    with EventStorage(iteration) as storage:
        storage.put_scalars(**flatten_results_dict(results), smoothing_hint=False)
        writer = strict_json_lines(JSONWriter(path))
        writer.write()
        writer.close()
    return path
