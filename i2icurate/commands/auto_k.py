"""`discover -k auto`: which Ks to try, the sweep over them, and what the run folder and screen get from it.

The sweep reads the descriptor the class heads will read (the folder's fitted PCA of the trunk's cached features):
k-means over the whole range costs seconds, then the class heads are trained for the best K and its neighbours (a
head phase per K, on the data and on a reference; about a minute per K on one CPU thread for 10,000 images);
discover then builds its networks with the chosen K. The choice is written into config.json (`k`,
and `k_auto` with how it was made), so `--resume` and `--from` reuse it without sweeping again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from i2icurate.config import parse_k_range
from i2icurate.data.domains import EXCLUDE, LABELS_CSV, parse_cluster, read_labels
from i2icurate.engines.head_agreement import head_agreement
from i2icurate.errors import UserError
from i2icurate.export.k_curve import k_curve_png
from i2icurate.metrics.k_choice import REFINE_SAMPLE, SWEEP_SAMPLE, choose_k, refine, sample_rows, shortlist, sweep
from i2icurate.runs import CONFIG_FILE, write_csv, write_json

K_SWEEP_CSV = "k_sweep.csv"
K_CURVE_PNG = "k_curve.png"
SWEEP_COLUMNS = ("k", "head_agreement_excess", "head_agreement", "head_agreement_null", "stability_excess",
                 "stability", "stability_null", "silhouette", "eigengap", "inertia")


def labelled_clusters(run: Path, paths: list[str]) -> int:
    """How many clusters the run's human labels need (the highest cluster_N label of an image here, plus one; 0 when
    the run has no labels): a lower bound on K."""
    if not (run / LABELS_CSV).is_file():
        return 0
    here, needed = set(paths), 0
    for path, label in read_labels(run / LABELS_CSV).items():
        if path not in here or label == EXCLUDE:
            continue
        try:
            needed = max(needed, parse_cluster(label) + 1)
        except UserError:
            continue  # e.g. new_cluster: trains unlabelled
    return needed


def k_candidates(k_range: str, n_images: int, at_least: int = 0) -> list[int]:
    """The Ks to try: MIN..MAX of `k_range`, MAX clipped to half the number of images (at least 2 clusters of 2
    images on average), and every K below `at_least` (the labelled clusters) left out."""
    low, high = parse_k_range(k_range)
    if at_least > n_images:
        raise UserError(f"the labels name {at_least} clusters but the folder has {n_images} images")
    high = max(2, min(high, n_images // 2))
    low = max(min(low, high), at_least)
    return list(range(low, max(high, low) + 1))


def sweep_k(run: Path, cfg: dict[str, Any], desc: np.ndarray, paths: list[str], console: Console,
            device: torch.device | None = None) -> dict[str, Any]:
    """Score every candidate K on the descriptors (N, D), train the class heads for the best and its neighbours
    (on `device`), choose one, write k_sweep.csv and k_curve.png, and record the choice in the run's config.json;
    returns the updated config."""
    at_least = labelled_clusters(run, paths)
    ks = k_candidates(cfg["k_range"], len(desc), at_least)
    with console.status(f"choosing K: {len(ks)} candidates from {ks[0]} to {ks[-1]} on "
                        f"{min(len(desc), SWEEP_SAMPLE)} images"):
        rows = sweep(desc, ks, seed=cfg["seed"])
    refined = shortlist(rows)
    x = desc[sample_rows(len(desc), cfg["seed"], REFINE_SAMPLE)]
    device = device or torch.device("cpu")
    with console.status(f"choosing K: training the class heads for K = {', '.join(map(str, refined))} on "
                        f"{len(x)} images and on a cluster-free reference"):
        rows = refine(rows, x, lambda points, k: head_agreement(points, k, cfg, device, cfg["seed"]), cfg["seed"])
    choice = choose_k(rows)
    write_csv(run / K_SWEEP_CSV, SWEEP_COLUMNS, ([row[c] for c in SWEEP_COLUMNS] for row in rows))
    k_curve_png(rows, choice.k, choice.runner_up, run / K_CURVE_PNG, title=f"{run.name}: choosing K ({choice.rule})")
    hint = range_end_hint(choice.k, ks, parse_k_range(cfg["k_range"])[1])
    record = {"k": choice.k, "runner_up": choice.runner_up, "rule": choice.rule, "tried": [ks[0], ks[-1]],
              "k_range": cfg["k_range"], "labelled_clusters": at_least,
              "sample": int(min(len(desc), SWEEP_SAMPLE)), "refined": refined, "heads_sample": len(x),
              "at_range_end": hint is not None}
    cfg = {**cfg, "k": choice.k, "k_auto": record}
    write_json(run / CONFIG_FILE, cfg)
    console.print(k_auto_line(record), highlight=False)
    if hint:
        console.print(f"[yellow]{hint}[/yellow]", highlight=False)
    return cfg


def range_end_hint(k: int, ks: list[int], asked_high: int) -> str | None:
    """A line for the screen when the chosen K is the largest one tried and the user's range, not the folder size,
    ended the sweep: the criterion may still rise beyond it (None otherwise)."""
    if len(ks) < 2 or k != ks[-1] or ks[-1] < asked_high:
        return None
    return (f"K={k} is the largest K tried: the criterion may still rise beyond it; a run with --k-range "
            f"{ks[0]}:{2 * k} shows whether it peaks")


def k_auto_line(record: dict[str, Any]) -> str:
    """One line for the screen: the chosen K, the runner-up, the rule and where the figures are."""
    low, high = record["tried"]
    runner = f", runner-up K={record['runner_up']}" if record.get("runner_up") is not None else ""
    bound = (f"; the labels need at least {record['labelled_clusters']}" if record.get("labelled_clusters") else "")
    return (f"-k auto: K={record['k']}{runner} (tried {low}..{high}{bound}; rule: {record['rule']}; "
            f"criteria in {K_SWEEP_CSV} and {K_CURVE_PNG})")
