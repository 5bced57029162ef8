"""`i2icurate export RUN`: (re)write a finished discover run's tables, index and pictures from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from i2icurate.export.pipeline import export_run
from i2icurate.runs import latest_run, open_run


def export(run: str | Path | None = None, *, project: str = "runs", eval_labels: str | None = None,
           console: Console | None = None) -> dict[str, Any]:
    """Export a discover run (the newest under `project` when `run` is None); returns the summary."""
    folder = open_run(run) if run is not None else latest_run(project, "discover")
    return export_run(folder, console or Console(), eval_labels=eval_labels)
