"""Every JSON file the tool writes is strict JSON: NaN and infinities become null (issue 10, item 3)."""

from __future__ import annotations

import numpy as np

from i2icurate.runs import write_json
from tests.cli_helpers import strict_json


def test_every_json_file_of_a_run_is_strict_json(small_run):
    run, _ = small_run
    summary = strict_json((run / "summary.json").read_text())
    assert any(row["size"] == 0 and row["mean_confidence"] is None for row in summary["clusters"])  # empty -> null
    files = [*run.rglob("*.json"), *run.rglob("*.jsonl")]
    assert {p.name for p in files} >= {"config.json", "summary.json", "stats.jsonl"}
    for path in files:
        for text in [path.read_text()] if path.suffix == ".json" else path.read_text().splitlines():
            strict_json(text)


def test_write_json_writes_null_for_non_finite_numbers(tmp_path):
    write_json(tmp_path / "x.json", {"nan": float("nan"), "inf": [np.float32("inf"), 1.5], "arr": np.array([np.nan])})
    assert strict_json((tmp_path / "x.json").read_text()) == {"nan": None, "inf": [None, 1.5], "arr": [None]}
