"""Which images make up a domain: a discover cluster, human labels (labels.csv) winning over pseudo labels."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from i2icurate.errors import UserError
from i2icurate.runs import read_csv

LABELS_CSV = "labels.csv"
LABELS_HEADER = ("path", "label", "source", "time")  # labels.csv columns; later rows win
EXCLUDE = "exclude"
NEW_CLUSTER = "new_cluster"  # images of none of the clusters: a retrain --from their run gives them one new cluster


def parse_cluster(value: str | int) -> int:
    """'3', 3 or 'cluster_3' -> 3; anything else is a one-line error."""
    match = re.fullmatch(r"(?:cluster_?)?(\d+)", str(value).strip())
    if not match:
        raise UserError(f"not a cluster id: {value!r} (use a number such as 3 or cluster_3)")
    return int(match.group(1))


def read_labels(path: Path) -> dict[str, str]:
    """The newest label per path of a labels.csv (path,label,source,time; append-only, so later rows win)."""
    try:
        rows = read_csv(path)
    except FileNotFoundError:
        raise UserError(f"labels file not found: {path}") from None
    if rows and not {"path", "label"} <= set(rows[0]):
        raise UserError(f"{path} needs the columns path,label (found: {', '.join(rows[0])})")
    return {row["path"]: row["label"].strip() for row in rows}


def human_labels(run: Path) -> dict[str, str]:
    """The newest human label per path from the run's labels.csv, if it has one."""
    path = run / LABELS_CSV
    return read_labels(path) if path.is_file() else {}


def effective_clusters(run: Path, min_confidence: float = 0.0) -> tuple[list[str], np.ndarray]:
    """Every image's cluster id: a human label if there is one, else the pseudo label when confident enough.

    -1 marks images without a usable cluster (excluded, a new cluster name, or below `min_confidence`).
    """
    rows = read_csv(run / "assignments.csv")
    labels = human_labels(run)
    paths, clusters = [], []
    for row in rows:
        label = labels.get(row["path"])
        if label is not None:
            try:
                cluster = -1 if label == EXCLUDE else parse_cluster(label)
            except UserError:
                cluster = -1
        else:
            cluster = int(row["cluster"]) if float(row["confidence"]) >= min_confidence else -1
        paths.append(row["path"])
        clusters.append(cluster)
    return paths, np.asarray(clusters, dtype=np.int64)


def domain_paths(run: Path, cluster: int, k: int, min_confidence: float = 0.0) -> list[str]:
    """Relative paths of the images in `cluster`, with one-line errors for an unknown or empty cluster."""
    if not 0 <= cluster < k:
        raise UserError(f"cluster {cluster} does not exist: the run {run} has clusters 0..{k - 1}")
    paths, clusters = effective_clusters(run, min_confidence)
    chosen = [p for p, c in zip(paths, clusters, strict=True) if c == cluster]
    if not chosen:
        extra = f" with confidence >= {min_confidence}" if min_confidence > 0 else ""
        raise UserError(f"cluster {cluster} of {run} has no images{extra}")
    return chosen
