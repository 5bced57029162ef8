"""Read a reviewer's corrections back from the run's FiftyOne dataset and append them to the run's labels.csv.

A sample's human label is its `human_label` field (set by the `assign_cluster` operator) when present, else taken
from its tags: `cluster:N` -> `cluster_N`, `exclude`, `new_cluster`. labels.csv is append-only (the newest row per
path wins, see i2icurate/data/domains.py), so only labels that differ from its current state are appended, with
source=human. Taking a tag off after a sync does not revert the label: re-label the sample instead.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from i2icurate.curation.dataset import HUMAN_FIELD, dataset_name
from i2icurate.curation.fo_env import import_fiftyone
from i2icurate.data.domains import EXCLUDE, LABELS_CSV, LABELS_HEADER, NEW_CLUSTER, human_labels
from i2icurate.errors import UserError
from i2icurate.markup import escape
from i2icurate.runs import open_run, read_csv, read_json, write_text

_CLUSTER_TAG = re.compile(r"cluster[:_ ]?(\d+)")
_NEW_TAGS = {"new_cluster", "new cluster", "new-cluster", "newcluster"}


def _tag_label(tag: str) -> str | None:
    """A tag's label (`cluster:7` -> `cluster_7`, `exclude`, `new_cluster`), None for unrelated tags."""
    tag = tag.strip().lower()
    if tag == EXCLUDE:
        return EXCLUDE
    if tag in _NEW_TAGS:
        return NEW_CLUSTER
    match = _CLUSTER_TAG.fullmatch(tag)
    return f"cluster_{int(match.group(1))}" if match else None


def label_from_tags(tags: list[str]) -> tuple[str | None, str | None]:
    """(label, problem): the label the tags ask for, and a note when they disagree.

    exclude > new_cluster > cluster:N; two different cluster:N tags alone are ambiguous and give no label.
    """
    labels = sorted({label for tag in tags if (label := _tag_label(tag))})
    if len(labels) <= 1:
        return (labels[0] if labels else None), None
    shown = ", ".join(labels)
    for winner in (EXCLUDE, NEW_CLUSTER):
        if winner in labels:
            return winner, f"conflicting tags ({shown}): kept {winner}"
    return None, f"conflicting tags ({shown}): skipped"


def _valid(label: str, k: int | None) -> bool:
    if label in (EXCLUDE, NEW_CLUSTER):
        return True
    match = re.fullmatch(r"cluster_(\d+)", label)
    return bool(match) and (not k or int(match.group(1)) < k)


def reviewed_labels(dataset: Any, k: int | None) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Relative path -> human label for every reviewed sample, and (path, problem) notes."""
    has_field = dataset.has_field(HUMAN_FIELD)
    columns = dataset.values(["i2i_path", "tags", f"{HUMAN_FIELD}.label"] if has_field else ["i2i_path", "tags"])
    field_labels = columns[2] if has_field else [None] * len(columns[0])
    labels: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for path, tags, field_label in zip(columns[0], columns[1], field_labels, strict=True):
        if not path:
            continue
        tag_label, problem = label_from_tags(tags or [])
        label = field_label or tag_label
        if field_label and tag_label and field_label != tag_label:
            problem = f"{HUMAN_FIELD} {field_label} and tags ({tag_label}) disagree: kept {field_label}"
        if label is not None and not _valid(label, k):
            problem, label = f"{label} is not a cluster of this run (0..{(k or 1) - 1}): skipped", None
        if problem:
            problems.append((path, problem))
        if label is not None:
            labels[path] = label
    return labels, problems


def append_labels(run: Path, rows: list[dict[str, str]]) -> None:
    """Append rows to labels.csv atomically: the old content, byte for byte, plus the new rows."""
    path = run / LABELS_CSV
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if old.strip():
        header = next(csv.reader(io.StringIO(old)))
        if "path" not in header or "label" not in header:
            raise UserError(f"{path} has no path,label header; fix or move it before syncing")
        if not old.endswith("\n"):
            old += "\n"
    else:
        header, old = list(LABELS_HEADER), ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    if not old:
        writer.writeheader()
    writer.writerows(rows)
    write_text(path, old + buf.getvalue())


def sync_run(run: str | Path, console: Console | None = None) -> list[dict[str, str]]:
    """Append the reviewer's new or changed labels to the run's labels.csv; returns the appended rows.

    Each row: path, label, source ("human"), time (ISO 8601, UTC), plus `old` (the previous label, not written).
    """
    console = console or Console()
    folder = open_run(run).resolve()
    fo = import_fiftyone()
    name = dataset_name(folder)
    if not fo.dataset_exists(name):
        raise UserError(f"no FiftyOne dataset for {folder}: run `i2icurate review {folder}` first")
    dataset = fo.load_dataset(name)
    k = read_json(folder / "config.json").get("k")
    reviewed, problems = reviewed_labels(dataset, int(k) if k else None)
    current = human_labels(folder)
    pseudo = {}
    if (folder / "assignments.csv").is_file():
        pseudo = {row["path"]: f"cluster_{row['cluster']}" for row in read_csv(folder / "assignments.csv")}
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    rows = [{"path": path, "label": label, "source": "human", "time": stamp,
             "old": current[path] if path in current else f"{pseudo.get(path, '?')} (pseudo)"}
            for path, label in sorted(reviewed.items()) if current.get(path) != label]
    if rows:
        append_labels(folder, rows)
    _report(console, folder, rows, problems, len(reviewed))
    return rows


def _report(console: Console, run: Path, rows: list[dict[str, str]], problems: list[tuple[str, str]],
            reviewed: int) -> None:
    if rows:
        table = Table(title=f"labels.csv: {len(rows)} new human label(s)", title_justify="left")
        table.add_column("path")
        table.add_column("old")
        table.add_column("")
        table.add_column("new", style="bold")
        for row in rows:
            table.add_row(escape(row["path"]), escape(row["old"]), "→", escape(row["label"]))
        console.print(table)
    else:
        console.print(f"labels.csv is up to date ({reviewed} reviewed sample(s), nothing new)")
    for path, problem in problems:
        console.print(f"[yellow]{escape(path)}: {escape(problem)}[/]", highlight=False)
    if rows:
        console.print(f"appended to {run / LABELS_CSV}", markup=False)

