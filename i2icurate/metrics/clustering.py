"""Clustering quality against known labels (ACC, NMI, ARI) and the k-means used by the baselines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from i2icurate.errors import UserError


def _encode(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Map arbitrary hashable labels to 0..n-1 in order of first appearance."""
    codes: dict[Any, int] = {}
    return np.fromiter((codes.setdefault(v, len(codes)) for v in values), dtype=np.int64, count=len(values))


def _as_list(values: Sequence[Any] | np.ndarray) -> list[Any]:
    # .tolist() turns numpy scalars into Python ones so 1 and np.int64(1) count as the same label.
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def cluster_accuracy(y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of predicted clusters to true classes.

    The matching is the Hungarian assignment on the contingency matrix, so it works when the number of clusters
    differs from the number of classes (unmatched clusters count as wrong). Labels may be any hashable values.
    """
    true, pred = _as_list(y_true), _as_list(y_pred)
    if len(true) != len(pred):
        raise ValueError(f"y_true has {len(true)} labels but y_pred has {len(pred)}")
    if not true:
        return float("nan")
    t, p = _encode(true), _encode(pred)
    contingency = np.zeros((p.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(contingency, (p, t), 1)
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    return float(contingency[rows, cols].sum() / len(true))


def clustering_scores(y_true: Sequence[Any] | np.ndarray, y_pred: Sequence[Any] | np.ndarray) -> dict[str, float]:
    """ACC, NMI and ARI of a clustering, ignoring samples whose true label is "" or None (unlabeled)."""
    true, pred = _as_list(y_true), _as_list(y_pred)
    if len(true) != len(pred):
        raise ValueError(f"y_true has {len(true)} labels but y_pred has {len(pred)}")
    keep = [i for i, label in enumerate(true) if label is not None and label != ""]
    if not keep:
        return {"acc": float("nan"), "nmi": float("nan"), "ari": float("nan")}
    t = _encode([true[i] for i in keep])
    p = _encode([pred[i] for i in keep])
    return {
        "acc": cluster_accuracy(t, p),
        "nmi": float(normalized_mutual_info_score(t, p)),
        "ari": float(adjusted_rand_score(t, p)),
    }


def kmeans_labels(features: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Cluster rows of `features` into `k` groups with k-means (50 iterations, best of 3 restarts).

    faiss k-means when faiss is installed, else scikit-learn's (same settings, different random starts).
    """
    x = np.ascontiguousarray(np.asarray(features).reshape(len(features), -1), dtype=np.float32)
    if not 1 <= k <= len(x):
        raise UserError(f"k-means needs 1 <= k <= number of samples, got k={k} for {len(x)} samples")
    try:
        import faiss
    except ImportError:
        from sklearn.cluster import KMeans

        return KMeans(k, n_init=3, max_iter=50, random_state=seed).fit_predict(x).astype(np.int64)
    # faiss warns (and subsamples) below 39 points per centroid; the baselines are small enough not to care.
    kmeans = faiss.Kmeans(x.shape[1], k, niter=50, nredo=3, seed=seed, verbose=False, min_points_per_centroid=1)
    kmeans.train(x)
    _, labels = kmeans.index.search(x, 1)
    return labels[:, 0].astype(np.int64)
