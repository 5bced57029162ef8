"""What a reviewer's corrections did: anchors for retraining, and the "what changed" report after it.

Retraining from a reviewed run (`discover --labels labels.csv --from RUN`) must move what the labels name and little
else. Every unlabelled image whose parent cluster no label touched (no labelled image in it and no label pointing to
it) is *anchored*: the heads get a cross-entropy term toward its parent cluster (`--w-anchor`), except the least
confident share of each such cluster (`--anchor-free-share`), which may follow the labels. Touched clusters,
targets of labels and new clusters stay free to change. An `exclude` only takes its image out of the training set and
touches no cluster, so a review made only of exclusions anchors every cluster: they stay as they were, less those
images. (Unanchored, 10 exclusions on a K = 9 run of the 1,797 digits let an untouched cluster lose 11 %.)
`new_cluster` labels touch the clusters their images are in; the retrain gets one cluster more (K), which they train
toward.

After the retrain, `changes.csv` lists every image whose cluster changed (before, after, whether the reviewer labelled
it), `changes.png` shows the before -> after counts (K rows, K+1 columns when a new cluster formed), and the screen
gets the per-pair table.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from i2icurate.data.domains import EXCLUDE, NEW_CLUSTER, parse_cluster
from i2icurate.errors import UserError
from i2icurate.export.visuals import count_matrix_png
from i2icurate.runs import CONFIG_FILE, read_csv, read_json, write_csv

CHANGES_CSV = "changes.csv"
CHANGES_PNG = "changes.png"


def parent_assignments(parent: Path) -> tuple[dict[str, int], dict[str, float]]:
    """path -> cluster and path -> its confidence, from one read of a finished run's assignments."""
    if not (parent / "assignments.csv").is_file():
        raise UserError(f"{parent} has no assignments.csv: finish it with `i2icurate discover --resume {parent}`")
    rows = read_csv(parent / "assignments.csv")
    return {row["path"]: int(row["cluster"]) for row in rows}, {row["path"]: float(row["confidence"]) for row in rows}


def parent_clusters(parent: Path) -> dict[str, int]:
    """path -> cluster of a finished run's assignments."""
    return parent_assignments(parent)[0]


def touched_clusters(before: dict[str, int], given: dict[str, str]) -> set[int]:
    """Clusters a reviewer touched: those holding an image labelled with anything but `exclude`, and those a label
    points to. An excluded image leaves the training set without saying anything about its cluster."""
    touched = set()
    for path, label in given.items():
        if label == EXCLUDE:
            continue
        if path in before:
            touched.add(before[path])
        try:
            touched.add(parse_cluster(label))
        except UserError:
            continue  # new_cluster and free-text labels name no existing cluster
    return touched


def anchor_targets(before: dict[str, int], given: dict[str, str], paths: list[str],
                   confidence: dict[str, float] | None = None, free_share: float = 0.0,
                   touched_free_share: float = 1.0) -> np.ndarray:
    """Per image of `paths`: its parent cluster if it is unlabelled, else -1. With `confidence` (the parent's, per
    path), the `free_share` least confident images of each untouched cluster and the `touched_free_share` least
    confident of each touched one stay free (-1) as well, so that a review can draw at most that share of a cluster.
    A touched cluster is free as a whole at `touched_free_share` 1 or without `confidence`, and so is a cluster that
    holds a `new_cluster` image: the class the reviewer names there hides in it, confidently assigned or not."""
    touched = touched_clusters(before, given)
    opened = {before[path] for path, label in given.items() if label == NEW_CLUSTER and path in before}
    hold_touched = confidence is not None and touched_free_share < 1
    anchors = np.full(len(paths), -1, dtype=np.int64)
    for i, path in enumerate(paths):
        cluster = before.get(path)
        if cluster is None or path in given or cluster in opened:
            continue
        if cluster not in touched or hold_touched:
            anchors[i] = cluster
    if confidence is None:
        return anchors
    sureness = np.array([confidence.get(path, 1.0) for path in paths])
    sizes = Counter(before.values())  # the share is of the whole parent cluster
    for cluster in np.unique(anchors[anchors >= 0]):
        members = np.flatnonzero(anchors == cluster)
        share = touched_free_share if int(cluster) in touched else free_share
        free = members[np.argsort(sureness[members], kind="stable")][: int(share * sizes[int(cluster)])]
        anchors[free] = -1
    return anchors


def moved_images(before: dict[str, int], after: list[dict[str, str]], given: dict[str, str]) -> list[list]:
    """Rows (path, before, after, labelled, label) of every image whose cluster changed."""
    rows = []
    for row in after:
        path, now = row["path"], int(row["cluster"])
        was = before.get(path)
        if was is not None and was != now:
            rows.append([path, was, now, "yes" if path in given else "no", given.get(path, "")])
    return rows


def write_changes(run: Path, parent: Path, given: dict[str, str], k: int, console: Console) -> list[list]:
    """changes.csv, changes.png and the screen table of a retrained run (`k` clusters) against its parent; returns
    the rows. Clusters the parent did not have (a new cluster) are marked "(new)" on screen."""
    before = parent_clusters(parent)
    after = read_csv(run / "assignments.csv")
    rows = moved_images(before, after, given)
    write_csv(run / CHANGES_CSV, ["path", "before", "after", "labelled", "label"], rows)
    k_before = int(read_json(parent / CONFIG_FILE).get("k", k))
    _changes_png(run / CHANGES_PNG, before, after, k_before, k)
    pairs = Counter((r[1], r[2], r[3]) for r in rows)
    table = Table(title=f"what changed since {parent.name}: {len(rows)} of {len(after)} images moved")
    for col in ("from", "to", "labelled by the reviewer", "moved on their own"):
        table.add_column(col, justify="right")
    for a, b in sorted({(a, b) for a, b, _ in pairs}):
        table.add_row(str(a), f"{b} (new)" if b >= k_before else str(b), str(pairs[(a, b, "yes")]),
                      str(pairs[(a, b, "no")]))
    console.print(table)
    return rows


def _changes_png(path: Path, before: dict[str, int], after: list[dict[str, str]], k_before: int, k: int) -> None:
    counts = np.zeros((k_before, k), dtype=np.int64)
    for row in after:
        if row["path"] in before:
            counts[before[row["path"]], int(row["cluster"])] += 1
    count_matrix_png(counts, path, "images per cluster: before (rows) -> after retraining (columns)",
                     "before", "after")
