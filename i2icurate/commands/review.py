"""`i2icurate review RUN`: load a discover run into FiftyOne and open the App to review its clusters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from i2icurate.markup import bold
from i2icurate.runs import latest_run, open_finished_run

LOCAL_HOSTS = ("", "0.0.0.0", "::")


def app_url(address: str, port: int, slug: str) -> str:
    """The App's address for a dataset (a wildcard bind address is shown as 127.0.0.1)."""
    host = "127.0.0.1" if address in LOCAL_HOSTS else address
    return f"http://{host}:{port}/datasets/{slug}"


def review(run: str | Path | None = None, *, project: str = "runs", port: int = 5151, address: str = "127.0.0.1",
           launch: bool = True, remote: bool = False, console: Console | None = None) -> Any:
    """Build (or refresh) the run's FiftyOne dataset, print its views and, with `launch`, serve the App until Ctrl-C.

    Returns the `fiftyone.Dataset`.
    """
    from i2icurate.curation.dataset import build_dataset, view_counts
    from i2icurate.curation.fo_env import import_fiftyone

    console = console or Console()
    folder = open_finished_run(run) if run is not None else latest_run(project, "discover")
    dataset = build_dataset(folder, console)
    table = Table(title="saved views", title_justify="left")
    table.add_column("view")
    table.add_column("samples", justify="right")
    for name, count in view_counts(dataset).items():
        table.add_row(name, str(count))
    console.print(table)
    console.print("Relabel in the App: tag samples [bold]cluster:N[/], [bold]exclude[/] or [bold]new_cluster[/], or "
                  "press ` and run [bold]Assign selected samples to cluster N[/]; then "
                  f"{bold(f'i2icurate sync {folder}')}", highlight=False)
    if not launch:
        return dataset
    fo = import_fiftyone()
    session = fo.launch_app(dataset, port=port, address=address, remote=remote, auto=False)
    console.print(f"FiftyOne App: {bold(app_url(address, port, dataset.slug))}  (Ctrl-C to stop)", highlight=False)
    try:
        session.wait(-1)
    except KeyboardInterrupt:
        console.print(f"App stopped; save the corrections with {bold(f'i2icurate sync {folder}')}", highlight=False)
    finally:
        session.close()
    return dataset
