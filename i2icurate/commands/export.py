"""`i2icurate export RUN`: (re)write a finished discover run's tables, index and pictures from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from i2icurate.engines.checkpoint import LAST, load_checkpoint
from i2icurate.errors import UserError
from i2icurate.export.pipeline import export_run
from i2icurate.runs import CONFIG_FILE, is_finished, latest_run, open_run, read_json, unfinished_error
from i2icurate.threads import apply_threads


def check_trained(run: Path) -> None:
    """Refuse a run whose training did not reach its last iteration (export would write a half-trained model)."""
    if is_finished(run):
        return
    if not (run / LAST).is_file():
        raise unfinished_error(run)
    step, iters = load_checkpoint(run / LAST).get("step", 0), read_json(run / CONFIG_FILE)["iters"]
    if step < iters:
        raise UserError(f"{run} stopped at iteration {step}/{iters}; finish it with "
                        f"`i2icurate discover --resume {run}`")


def export(run: str | Path | None = None, *, project: str = "runs", eval_labels: str | None = None,
           console: Console | None = None) -> dict[str, Any]:
    """Export a discover run (the newest finished one under `project` when `run` is None); returns the summary.

    A run whose training is complete but whose export never ran (or failed) is finished by this command.
    """
    folder = open_run(run) if run is not None else latest_run(project, "discover")
    check_trained(folder)
    console = console or Console()
    apply_threads(read_json(folder / CONFIG_FILE).get("threads", 0), console)
    return export_run(folder, console, eval_labels=eval_labels)
