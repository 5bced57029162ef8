"""Nearest-neighbour search over style embeddings with faiss: the saved index and k-NN outlier scores.

faiss is optional (see i2icurate/deps.py): without it `build_index` returns an `ExactIndex` (scikit-learn, exact at
any size, never saved) with the same `add` / `search` contract, so the outlier scores come out the same.

Up to `EXACT_MAX_ROWS` images the index is exact (`IndexFlatL2`); above, an inverted-file index (`IndexIVFFlat`)
searches only a few lists per query, so the k-NN pass no longer grows with N^2. Embeddings are read, added and
queried in chunks of `CHUNK_ROWS` rows, so a memory-mapped (N, D) array is never copied whole (the index itself holds
N x D floats, as any flat or IVF-flat faiss index does).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from i2icurate.export.spans import CHUNK_ROWS, row_spans
from i2icurate.runs import atomic_path

# Every image queries its neighbours, so exact search costs N^2 D multiply-adds (1.3e12 at 100k x 128, 1.3e14 at
# 1M); above this an IVF index scans about IVF_NPROBE / nlist of the rows per query, at a recall close to 1.
EXACT_MAX_ROWS = 100_000
IVF_NPROBE = 16  # inverted lists searched per query
# faiss guidance: nlist between 4 sqrt(N) and 16 sqrt(N); k-means wants at least 39 training points per centroid
# (it warns below) and subsamples to 256 per centroid anyway; 64 per list keeps training quick.
IVF_LISTS_PER_SQRT_N = 4
IVF_MIN_TRAIN_PER_LIST = 39
IVF_TRAIN_PER_LIST = 64


def _faiss() -> ModuleType | None:
    """The faiss module, or None when neither faiss-cpu nor faiss-gpu is installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class ExactIndex:
    """Exact L2 search with scikit-learn, used when faiss is absent; `search` answers like faiss's (squared L2)."""

    def __init__(self, d: int) -> None:
        self.d = d
        self._parts: list[np.ndarray] = []
        self._nn: Any = None

    @property
    def ntotal(self) -> int:
        """Number of rows added."""
        return sum(len(part) for part in self._parts)

    def add(self, x: np.ndarray) -> None:
        """Append rows (ids continue from the rows already added)."""
        self._parts.append(np.ascontiguousarray(x, dtype=np.float32))
        self._nn = None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and ids of the k nearest rows of every query, nearest first (-1 ids past ntotal)."""
        from sklearn.neighbors import NearestNeighbors

        if self._nn is None:
            self._parts = [np.concatenate(self._parts)] if self._parts else [np.zeros((0, self.d), np.float32)]
            self._nn = NearestNeighbors(algorithm="brute").fit(self._parts[0]) if self.ntotal else None
        m, found = len(queries), min(k, self.ntotal)
        sq_dist = np.full((m, k), np.inf, dtype=np.float32)
        ids = np.full((m, k), -1, dtype=np.int64)
        if found:
            dist, idx = self._nn.kneighbors(np.asarray(queries, dtype=np.float32), n_neighbors=found)
            sq_dist[:, :found], ids[:, :found] = np.square(dist), idx
        return sq_dist, ids


def _check_matrix(embeddings: np.ndarray) -> np.ndarray:
    x = embeddings if isinstance(embeddings, np.ndarray) else np.asarray(embeddings)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (N, D) array, got shape {x.shape}")
    return x


def _rows(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows start..stop as the contiguous float32 block faiss wants (a copy only of that chunk)."""
    return np.ascontiguousarray(x[start:stop], dtype=np.float32)


def use_gpu_faiss() -> bool:
    """Whether faiss is installed with GPU support and sees at least one GPU."""
    faiss = _faiss()
    if faiss is None:
        return False
    get_num_gpus = getattr(faiss, "get_num_gpus", None)  # absent in CPU-only builds
    if get_num_gpus is None:
        return False
    try:
        return int(get_num_gpus()) > 0
    except Exception:  # a GPU build without a usable driver can raise here
        return False


def _is_gpu_index(index: Any) -> bool:
    name = type(index).__name__
    return name.startswith("Gpu") or name == "IndexReplicas"


def _search_index(faiss: ModuleType, cpu_index: Any) -> Any:
    """The index to search with: a GPU copy when one is available, else the CPU index itself."""
    if not _is_gpu_index(cpu_index) and use_gpu_faiss():
        return faiss.index_cpu_to_all_gpus(cpu_index)
    return cpu_index


def ivf_lists(n: int) -> int:
    """Number of inverted lists for n rows: about 4 sqrt(n), but never fewer than 39 training points per list."""
    return max(1, min(round(IVF_LISTS_PER_SQRT_N * math.sqrt(n)), n // IVF_MIN_TRAIN_PER_LIST))


def _training_sample(x: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` rows drawn without replacement (sorted, so a memmap is read front to back)."""
    if size >= len(x):
        return _rows(x, 0, len(x))
    idx = np.sort(np.random.default_rng(seed).choice(len(x), size, replace=False))
    return np.ascontiguousarray(x[idx], dtype=np.float32)


def _empty_index(faiss: ModuleType, n: int, d: int, exact_max_rows: int, nprobe: int) -> Any:
    if n <= exact_max_rows:
        return faiss.IndexFlatL2(d)
    nlist = ivf_lists(n)
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist, faiss.METRIC_L2)
    index.nprobe = min(nprobe, nlist)
    return index


def build_index(
    embeddings: np.ndarray,
    exact_max_rows: int | None = None,
    nprobe: int = IVF_NPROBE,
    gpu: bool = False,
    seed: int = 0,
    chunk_rows: int = CHUNK_ROWS,
) -> Any:
    """An L2 index over `embeddings` (N, D) with ids = row index, filled chunk by chunk.

    Exact (`IndexFlatL2`) up to `exact_max_rows` rows (None = EXACT_MAX_ROWS), else `IndexIVFFlat` with
    `ivf_lists(N)` lists trained on a seeded sample of 64 rows per list and searched with `nprobe` lists. A CPU index
    (it can be saved as is) unless `gpu`: then k-means, adding and the returned index run on the GPUs
    (`save_index` copies it back). Without faiss, an exact `ExactIndex` at any size.
    """
    faiss = _faiss()
    x = _check_matrix(embeddings)
    n, d = x.shape
    if faiss is None:
        exact = ExactIndex(d)
        for start, stop in row_spans(n, chunk_rows):
            exact.add(_rows(x, start, stop))
        return exact
    exact_max_rows = EXACT_MAX_ROWS if exact_max_rows is None else exact_max_rows
    index = _empty_index(faiss, n, d, exact_max_rows, nprobe)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        # With GPUs, train the CPU index with k-means on the GPUs (faiss's advice, also right for several GPUs);
        # the local name keeps the GPU index alive while faiss holds only a raw pointer to it.
        clustering = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(d)) if gpu else None
        if clustering is not None:
            ivf.clustering_index = clustering
        index.train(_training_sample(x, IVF_TRAIN_PER_LIST * ivf.nlist, seed))
        ivf.clustering_index = None
    if gpu:
        index = faiss.index_cpu_to_all_gpus(index)
        if ivf is not None:
            _set_nprobe(faiss, index, ivf.nprobe)
    for start, stop in row_spans(n, chunk_rows):
        index.add(_rows(x, start, stop))
    return index


def _set_nprobe(faiss: ModuleType, index: Any, nprobe: int) -> None:
    """Set nprobe on an IVF index, on the CPU or on the GPUs (a GPU copy does not always carry it over)."""
    space = faiss.GpuParameterSpace() if _is_gpu_index(index) else faiss.ParameterSpace()
    space.set_index_parameter(index, "nprobe", nprobe)


def _chunk_scores(sq_dist: np.ndarray, ids: np.ndarray, start: int, k: int) -> np.ndarray:
    """Mean neighbour distance of rows start.. from their k+1 search results, their own row dropped by index."""
    m = len(ids)
    own = ids == np.arange(start, start + m)[:, None]
    # With duplicates the self hit can fall outside the k+1 results; then drop the farthest one instead.
    missing = ~own.any(axis=1)
    own[missing, -1] = True
    dist = np.sqrt(np.maximum(sq_dist[~own].reshape(m, k), 0.0))
    found = ids[~own].reshape(m, k) >= 0  # an IVF search comes back short (-1 ids) when its lists hold too few rows
    if found.all():
        return dist.mean(axis=1).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):  # no neighbour found at all: NaN
        return (np.where(found, dist, 0.0).sum(axis=1) / found.sum(axis=1)).astype(np.float32)


def knn_outlier_scores(
    embeddings: np.ndarray,
    k: int = 10,
    index: Any | None = None,
    exact_max_rows: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> np.ndarray:
    """Per image, the mean L2 distance to its k nearest other images (k clipped to N-1); float32 (N,).

    Each image is queried for k+1 neighbours and its own row is dropped by index, not by distance, so exact
    duplicates still count as real zero-distance neighbours of each other and no image matches itself. `index`
    (from `build_index` over the same rows) is reused when given; queries go in chunks of `chunk_rows`. With an IVF
    index the neighbours are approximate.
    """
    faiss = _faiss()
    x = _check_matrix(embeddings)
    n = len(x)
    k = min(int(k), n - 1)
    if k < 1:
        return np.zeros(n, dtype=np.float32)
    if index is None:
        index = build_index(x, exact_max_rows=exact_max_rows, chunk_rows=chunk_rows)
    searcher = index
    if not isinstance(index, ExactIndex):
        searcher = _search_index(faiss, index)
        ivf = None if _is_gpu_index(index) else faiss.try_extract_index_ivf(index)
        if searcher is not index and ivf is not None:
            _set_nprobe(faiss, searcher, ivf.nprobe)
    scores = np.empty(n, dtype=np.float32)
    for start, stop in row_spans(n, chunk_rows):
        sq_dist, ids = searcher.search(_rows(x, start, stop), k + 1)
        scores[start:stop] = _chunk_scores(sq_dist, ids, start, k)
    return scores


def save_index(index: Any, path: str | Path) -> bool:
    """Write a faiss index atomically (temp file beside `path`, then rename; GPU indexes are copied to CPU).

    An `ExactIndex` (no faiss) is not saved: any stale file at `path` is removed and False returned.
    """
    if isinstance(index, ExactIndex):
        Path(path).unlink(missing_ok=True)
        return False
    faiss = _faiss()
    if _is_gpu_index(index):
        index = faiss.index_gpu_to_cpu(index)
    with atomic_path(path) as tmp:
        faiss.write_index(index, os.fspath(tmp))
    return True
