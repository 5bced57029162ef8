"""`i2icurate export RUN`: (re)write a finished discover run's tables, index and pictures from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from i2icurate.export.pipeline import export_run
from i2icurate.runs import CONFIG_FILE, latest_run, open_run, read_json
from i2icurate.threads import apply_threads


def export(run: str | Path | None = None, *, project: str = "runs", eval_labels: str | None = None,
           console: Console | None = None) -> dict[str, Any]:
    """Export a discover run (the newest under `project` when `run` is None); returns the summary."""
    folder = open_run(run) if run is not None else latest_run(project, "discover")
    console = console or Console()
    apply_threads(read_json(folder / CONFIG_FILE).get("threads", 0), console)
    return export_run(folder, console, eval_labels=eval_labels)
