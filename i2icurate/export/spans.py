"""Row spans: how export walks (possibly memory-mapped) per-image arrays a bounded block at a time."""

from __future__ import annotations

# Rows processed at a time after embedding (assignments, faiss adds and queries, UMAP transform): 32 MB of 128-d
# float32, so memory stays bounded whatever the folder size.
CHUNK_ROWS = 65_536


def row_spans(n: int, size: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) spans of at most `size` rows covering 0..n."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]
