"""What every benchmark's --json does: results are written whole, and never over an earlier file."""

import json
from pathlib import Path

from bench_common import write_results


def test_json_results_never_overwrite_an_earlier_file_even_within_one_second(tmp_path):
    path = str(tmp_path / "bench.json")
    written = [write_results({"run": k}, path) for k in range(3)]  # faster than a clock's second
    assert written == [path, str(tmp_path / "bench.1.json"), str(tmp_path / "bench.2.json")]
    assert [json.loads(Path(p).read_text()) for p in written] == [{"run": 0}, {"run": 1}, {"run": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.1.json", "bench.2.json", "bench.json"]
