"""Choosing the number of clusters K from descriptors: three established criteria per K, and one rule.

For every K of a range, on a random sample of the folder's descriptors (unit vectors):
- `stability`: the mean adjusted Rand index between pairs of k-means partitions, each fitted on its own random
  subsample and extended to the whole sample by nearest centroid (Ben-Hur et al. 2002; Lange et al. 2004). A K that
  matches real structure gives the same partition whatever the subsample.
- `stability_null`: the same on reference data without clusters: Gaussian points with the sample's mean and
  covariance, scaled to unit length like the descriptors. k-means splits such a blob stably into 2 or 3 along its
  main axes, so stability alone favours the smallest K; `stability_excess` = stability - stability_null is what the
  folder's structure adds (Clest: Dudoit & Fridlyand 2002; the reference as in the gap statistic, Tibshirani et
  al. 2001).
- `silhouette`: the mean silhouette on cosine distance of the k-means partition of the sample (Rousseeuw 1987).
- `eigengap`: lambda_(K+1) - lambda_K of the normalised Laplacian of the symmetric kNN graph (von Luxburg 2007):
  K well-separated groups give K eigenvalues near 0 and then a jump.

Then, for the K of the largest stability excess and its neighbours (`refine`):
- `head_agreement`: the mean adjusted Rand index between the partitions of the class heads a run trains with that
  K (engines/head_agreement.py), on the folder's descriptors; `head_agreement_null` the same on the cluster-free
  reference; `head_agreement_excess` their difference. k-means on a subsample finds the scale but its choice moves by
  one or two between seeds; the heads are the clusterer the run assigns with, trained on every image.

`choose_k` applies the rule documented in docs/discover.md (see RULE; SWEEP_RULE when no K was refined).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SWEEP_SAMPLE = 3000  # images the criteria are computed on, at most
SILHOUETTE_SAMPLE = 2000  # of those, the ones the silhouette reads
PAIRS = 5  # subsample pairs per K for the stability
SUBSAMPLE = 0.8  # share of the sample each of a pair is fitted on
GRAPH_KNN = 10  # neighbours per image in the graph of the eigengap
REFINE_RADIUS = 1  # the heads judge the k-means choice and the Ks this far from it
REFINE_SAMPLE = 20_000  # images the heads are trained on, at most (their updates are capped by the plan anyway)
CRITERIA = ("stability_excess", "stability", "silhouette", "eigengap")  # the sweep's; refine adds the heads'
SWEEP_RULE = "largest stability excess over a cluster-free reference (Clest)"
RULE = ("largest excess of the class heads' agreement over a cluster-free reference, among the K of the largest "
        "k-means stability excess (Clest) and its neighbours")


@dataclass(frozen=True)
class KChoice:
    """The chosen K, the runner-up (None when the range holds one K) and the rule that chose them."""

    k: int
    runner_up: int | None
    rule: str


def _kmeans(x: np.ndarray, k: int, seed: int) -> Any:
    from sklearn.cluster import KMeans

    return KMeans(k, n_init=1, random_state=seed).fit(x)


def stability(x: np.ndarray, k: int, seed: int, pairs: int = PAIRS) -> float:
    """Mean ARI over `pairs` pairs of k-means partitions fitted on different subsamples of `x`."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(seed)
    m = max(k, int(round(SUBSAMPLE * len(x))))
    scores = []
    for p in range(pairs):
        labels = []
        for side in range(2):
            rows = rng.choice(len(x), m, replace=False)
            labels.append(_kmeans(x[rows], k, seed + 2 * p + side).predict(x))
        scores.append(adjusted_rand_score(*labels))
    return float(np.mean(scores))


def silhouette(x: np.ndarray, labels: np.ndarray, seed: int) -> float:
    """Mean cosine silhouette of a partition (read on at most SILHOUETTE_SAMPLE rows); NaN when undefined."""
    from sklearn.metrics import silhouette_score

    if not 2 <= len(set(labels.tolist())) <= len(x) - 1:
        return float("nan")
    size = min(len(x), SILHOUETTE_SAMPLE)
    return float(silhouette_score(x, labels, metric="cosine", sample_size=size, random_state=seed))


def laplacian_eigenvalues(x: np.ndarray, count: int, knn: int = GRAPH_KNN) -> np.ndarray:
    """The `count` smallest eigenvalues of the normalised Laplacian of the symmetric kNN graph of `x` (ascending)."""
    from scipy.sparse import csr_matrix, diags
    from scipy.sparse.linalg import eigsh
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    knn = max(1, min(knn, n - 1))
    _, ids = NearestNeighbors(n_neighbors=knn + 1).fit(x).kneighbors(x)
    rows = np.repeat(np.arange(n), knn)
    graph = csr_matrix((np.ones(n * knn), (rows, ids[:, 1:].reshape(-1))), shape=(n, n))
    graph = graph.maximum(graph.T)  # an edge when either is among the other's neighbours
    inv_sqrt = diags(1.0 / np.sqrt(np.asarray(graph.sum(1)).reshape(-1)))
    affinity = inv_sqrt @ graph @ inv_sqrt  # L = I - affinity: its smallest eigenvalues are affinity's largest
    count = min(count, n)
    if count >= n - 1 or n <= 200:
        top = np.linalg.eigvalsh(affinity.toarray())[::-1][:count]
    else:
        top = np.sort(eigsh(affinity, k=count, which="LA", v0=np.ones(n) / np.sqrt(n))[0])[::-1]
    return np.clip(1.0 - top, 0.0, 2.0)


def null_reference(x: np.ndarray, seed: int) -> np.ndarray:
    """Points without cluster structure shaped like `x`: Gaussian with its mean and covariance, at unit length."""
    rng = np.random.default_rng(seed)
    mean, cov = x.mean(0), np.cov(x, rowvar=False) if len(x) > 1 else np.eye(x.shape[1])
    z = rng.multivariate_normal(mean, np.atleast_2d(cov), size=len(x), method="eigh")
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def sample_rows(n: int, seed: int, size: int = SWEEP_SAMPLE) -> np.ndarray:
    """The sorted indices of the images a sweep reads (all of them when there are at most `size`)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def sweep(desc: np.ndarray, ks: list[int], seed: int = 0,
          progress: Any = None) -> list[dict[str, float]]:
    """One row per K of `ks` (ascending): k and the criteria (CRITERIA, stability_null, k-means inertia)."""
    x = np.ascontiguousarray(desc[sample_rows(len(desc), seed)], dtype=np.float64)
    null = null_reference(x, seed)
    eig = laplacian_eigenvalues(x, max(ks) + 1)
    rows = []
    for done, k in enumerate(ks, 1):
        fit = _kmeans(x, k, seed)
        stab, stab_null = stability(x, k, seed + 1000 * k), stability(null, k, seed + 1000 * k)
        rows.append({
            "k": k,
            "stability_excess": stab - stab_null,
            "stability": stab,
            "stability_null": stab_null,
            "silhouette": silhouette(x, fit.labels_, seed),
            "eigengap": float(eig[k] - eig[k - 1]) if k < len(eig) else float("nan"),
            "inertia": float(fit.inertia_),
        })
        if progress is not None:
            progress(done, len(ks))
    return rows


def _ranked(rows: list[dict[str, float]], key: str) -> list[int]:
    """The Ks of the rows that have `key`, best first (ties: the smaller K)."""
    scored = [(r[key], int(r["k"])) for r in rows if np.isfinite(r.get(key, np.nan))]
    return [k for _, k in sorted(scored, key=lambda s: (-s[0], s[1]))]


def shortlist(rows: list[dict[str, float]], radius: int = REFINE_RADIUS) -> list[int]:
    """The Ks of the sweep within `radius` of the K of the largest stability excess (ascending)."""
    best = (_ranked(rows, "stability_excess") or [int(rows[0]["k"])])[0]
    return [int(r["k"]) for r in rows if abs(int(r["k"]) - best) <= radius]


def refine(rows: list[dict[str, float]], x: np.ndarray, agreement: Callable[[np.ndarray, int], float],
           seed: int = 0, radius: int = REFINE_RADIUS) -> list[dict[str, float]]:
    """The sweep's rows with `head_agreement`, `head_agreement_null` and `head_agreement_excess` (NaN outside the
    shortlist): `agreement(points, k)` on the descriptors `x` (N, D) and on their cluster-free reference."""
    picked = set(shortlist(rows, radius))
    null = null_reference(np.asarray(x, dtype=np.float64), seed)
    out = []
    for row in rows:
        data = reference = float("nan")
        if int(row["k"]) in picked:
            data, reference = agreement(x, int(row["k"])), agreement(null, int(row["k"]))
        out.append({**row, "head_agreement": data, "head_agreement_null": reference,
                    "head_agreement_excess": data - reference})
    return out


def choose_k(rows: list[dict[str, float]]) -> KChoice:
    """The K of the largest head-agreement excess among the refined Ks (RULE), or of the largest stability excess
    when none was refined (SWEEP_RULE); the runner-up is the next by the same criterion, else by the sweep's."""
    refined = _ranked(rows, "head_agreement_excess")
    swept = _ranked(rows, "stability_excess") or [int(r["k"]) for r in rows]
    order, rule = (refined, RULE) if refined else (swept, SWEEP_RULE)
    if len(order) < 2:  # a single refined K: the runner-up is the sweep's best other K
        order = order + [k for k in swept if k not in order]
    return KChoice(order[0], order[1] if len(order) > 1 else None, rule)
