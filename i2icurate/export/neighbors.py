"""Exact nearest-neighbour search over style embeddings with faiss: the saved index and k-NN outlier scores."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from i2icurate.errors import UserError
from i2icurate.runs import atomic_path


def _faiss() -> ModuleType:
    try:
        import faiss
    except ImportError as exc:
        raise UserError("faiss is not installed: pip install 'i2icurate[cpu]' (or [gpu] on CUDA machines)") from exc
    return faiss


def _as_matrix(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (N, D) array, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def use_gpu_faiss() -> bool:
    """Whether the installed faiss has GPU support and sees at least one GPU."""
    faiss = _faiss()
    get_num_gpus = getattr(faiss, "get_num_gpus", None)  # absent in CPU-only builds
    if get_num_gpus is None:
        return False
    try:
        return int(get_num_gpus()) > 0
    except Exception:  # a GPU build without a usable driver can raise here
        return False


def _search_index(faiss: ModuleType, cpu_index: Any) -> Any:
    """The index to search with: a GPU copy when one is available, else the CPU index itself."""
    if use_gpu_faiss():
        return faiss.index_cpu_to_all_gpus(cpu_index)
    return cpu_index


def build_index(embeddings: np.ndarray) -> Any:
    """An exact L2 `IndexFlatL2` holding `embeddings` (N, D); always a CPU index, so it can be saved."""
    faiss = _faiss()
    x = _as_matrix(embeddings)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    return index


def knn_outlier_scores(embeddings: np.ndarray, k: int = 10) -> np.ndarray:
    """Per image, the mean L2 distance to its k nearest other images (k clipped to N-1); float32 (N,).

    Each image is queried for k+1 neighbours and its own row is dropped by index, not by distance, so exact
    duplicates still count as real zero-distance neighbours of each other and no image matches itself.
    """
    faiss = _faiss()
    x = _as_matrix(embeddings)
    n = len(x)
    k = min(int(k), n - 1)
    if k < 1:
        return np.zeros(n, dtype=np.float32)
    index = _search_index(faiss, build_index(x))
    sq_dist, ids = index.search(x, k + 1)
    own = ids == np.arange(n)[:, None]
    # With duplicates the self hit can fall outside the k+1 results; then drop the farthest one instead.
    missing = ~own.any(axis=1)
    own[missing, -1] = True
    neighbours = sq_dist[~own].reshape(n, k)
    return np.sqrt(np.maximum(neighbours, 0.0)).mean(axis=1).astype(np.float32)


def save_index(index: Any, path: str | Path) -> None:
    """Write a faiss index atomically (temp file beside `path`, then rename); GPU indexes are copied to CPU."""
    faiss = _faiss()
    if type(index).__name__.startswith("Gpu") or type(index).__name__ == "IndexReplicas":
        index = faiss.index_gpu_to_cpu(index)
    with atomic_path(path) as tmp:
        faiss.write_index(index, os.fspath(tmp))
