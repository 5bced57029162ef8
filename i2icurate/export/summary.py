"""Per-cluster counts and the terminal tables printed at the end of a run."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table


def cluster_summary(clusters: np.ndarray, confidence: np.ndarray, k: int) -> list[dict[str, Any]]:
    """One row per cluster: cluster, size, share of all images (0..1) and mean confidence (NaN when empty)."""
    labels = np.asarray(clusters).astype(np.int64).reshape(-1)
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if len(labels) != len(conf):
        raise ValueError(f"{len(labels)} cluster labels but {len(conf)} confidences")
    total = len(labels)
    rows = []
    for i in range(k):
        member_conf = conf[labels == i]
        finite = member_conf[np.isfinite(member_conf)]
        rows.append(
            {
                "cluster": i,
                "size": int(len(member_conf)),
                "share": len(member_conf) / total if total else 0.0,
                "mean_confidence": float(finite.mean()) if len(finite) else float("nan"),
            }
        )
    return rows


def _number(value: Any, digits: int = 3) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "-"
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def print_summary(
    console: Console,
    rows: list[dict[str, Any]],
    scores: dict[str, float] | None,
    baselines: dict[str, dict[str, float]] | None = None,
    title: str = "",
) -> None:
    """Print the cluster table and, when label scores are given, an ACC/NMI/ARI table (TUNIT, then baselines)."""
    table = Table(title=title or None)
    table.add_column("cluster", justify="right")
    table.add_column("images", justify="right")
    table.add_column("share %", justify="right")
    table.add_column("mean confidence", justify="right")
    for row in rows:
        table.add_row(
            str(row["cluster"]),
            f"{row['size']:,}",
            _number(100 * float(row["share"]), 1),
            _number(row["mean_confidence"]),
        )
    console.print(table)
    if scores is None:
        return
    score_table = Table(title="scores against the known labels")
    score_table.add_column("method")
    for name in ("ACC", "NMI", "ARI"):
        score_table.add_column(name, justify="right")
    methods = {"TUNIT": scores, **(baselines or {})}
    for method, values in methods.items():
        score_table.add_row(method, *(_number(values.get(key)) for key in ("acc", "nmi", "ari")))
    console.print(score_table)
