"""metrics.json is JSON lines a strict parser reads: a metric that cannot be computed (NaN) is written as null."""

import json
import math

from cascade_det.evaluation.metrics import json_safe, write_eval_metrics


def strict(line):
    return json.loads(line, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))


def test_eval_metrics_write_nan_and_infinity_as_null(tmp_path):
    write_eval_metrics(str(tmp_path), {"bbox": {"AP": 12.5, "APl": math.nan, "APs": math.inf}}, iteration=7)
    (line,) = (tmp_path / "metrics.json").read_text().splitlines()
    assert strict(line) == {"bbox/AP": 12.5, "bbox/APl": None, "bbox/APs": None, "iteration": 7}


def test_json_safe_reaches_into_nested_values():
    assert json_safe({"a": [1.0, math.nan, {"b": -math.inf}], "c": "NaN"}) == {
        "a": [1.0, None, {"b": None}],
        "c": "NaN",
    }
