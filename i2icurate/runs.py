"""Run folders and atomic file writes.

A run folder is `<project>/<command>/<name>N/`; N grows so an earlier run is never overwritten. Every file the tool
writes goes through a temporary file in the same folder and `os.replace`, so a kill never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from i2icurate.errors import UserError

CONFIG_FILE = "config.json"
# Written last by the export at the end of `discover` (or by `export`): a run without it never finished.
FINISHED_FILE = "summary.json"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_run_dir(project: str | Path, command: str, name: str) -> Path:
    """Create and return the next free `<project>/<command>/<name>N` folder (N = 1, 2, ...)."""
    parent = Path(project) / command
    parent.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"^{re.escape(name)}(\d+)$")
    taken = [int(m.group(1)) for p in parent.iterdir() if (m := pattern.match(p.name))]
    number = max(taken, default=0) + 1
    while True:
        run = parent / f"{name}{number}"
        try:
            run.mkdir()
            return run
        except FileExistsError:  # another process took it between the listing and mkdir
            number += 1


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | Path, text: str) -> None:
    """Write text (UTF-8) atomically."""
    write_bytes(path, text.encode("utf-8"))


def json_safe(obj: Any) -> Any:
    """`obj` with NaN and infinite floats (also NumPy scalars and arrays) replaced by None, ready for strict JSON."""
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_text(obj: Any, indent: int | None = None) -> str:
    """Strictly valid JSON (RFC 8259): non-finite numbers become null; other unknown types their str()."""
    return json.dumps(json_safe(obj), indent=indent, sort_keys=False, default=str, allow_nan=False)


def write_json(path: str | Path, obj: Any) -> None:
    """Write strict JSON atomically, indented for people (NaN and infinities are written as null)."""
    write_text(path, json_text(obj, indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV file atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Read a CSV file with a header into a list of dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def save_npy(path: str | Path, array: np.ndarray) -> None:
    """Save a NumPy array atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line (a line is written in one call, so a kill loses at most that line)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json_text(record) + "\n")


def open_run(path: str | Path) -> Path:
    """Return an existing run folder, or raise a one-line error saying what is missing."""
    run = Path(path)
    if not run.is_dir():
        raise UserError(f"run folder not found: {run}")
    if not (run / CONFIG_FILE).is_file():
        raise UserError(f"{run} is not an i2icurate run folder (no {CONFIG_FILE})")
    return run


def is_finished(run: str | Path) -> bool:
    """Whether a discover run finished: trained and exported (its summary.json exists)."""
    return (Path(run) / FINISHED_FILE).is_file()


def unfinished_error(run: str | Path) -> UserError:
    """The one-line answer to a command given a discover run that never finished, naming the command that does."""
    return UserError(f"{run} is an unfinished discover run (no {FINISHED_FILE}); finish it with "
                     f"`i2icurate discover --resume {run}`")


def open_finished_run(path: str | Path) -> Path:
    """`open_run` for commands that read a discover run's results: refuse a run that never finished."""
    run = open_run(path)
    if not is_finished(run):
        raise unfinished_error(run)
    return run


def latest_run(project: str | Path, command: str) -> Path:
    """The most recently finished run folder of a command, for commands whose RUN argument is optional.

    Runs that never finished (interrupted, or failed before their results were written) are passed over.
    """
    parent = Path(project) / command
    runs = [p for p in parent.glob("*") if (p / CONFIG_FILE).is_file()] if parent.is_dir() else []
    finished = [p for p in runs if is_finished(p)]
    if not finished:
        unfinished = f" ({len(runs)} unfinished: `i2icurate {command} --resume RUN` finishes one)" if runs else ""
        raise UserError(f"no finished {command} run found under {parent}{unfinished}; pass a run folder")
    return max(finished, key=lambda p: (p / FINISHED_FILE).stat().st_mtime)
