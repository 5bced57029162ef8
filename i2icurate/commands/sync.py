"""`i2icurate sync RUN`: append the labels a reviewer set in FiftyOne to the run's labels.csv."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from i2icurate.runs import latest_run, open_finished_run


def sync(run: str | Path | None = None, *, project: str = "runs",
         console: Console | None = None) -> list[dict[str, str]]:
    """Sync the run (the newest discover run under `project` when None); returns the rows appended to labels.csv."""
    from i2icurate.curation.sync import sync_run

    folder = open_finished_run(run) if run is not None else latest_run(project, "discover")
    return sync_run(folder, console or Console())
