"""What each command needs beyond the core install, checked before any work starts.

A plain `pip install i2icurate` gives a working tool. faiss stays optional because `faiss-cpu` and `faiss-gpu`
install the same `faiss` module and cannot both be requirements: without it, neighbours and outlier scores are
computed exactly with scikit-learn (the same numbers, slower beyond ~100k images) and no `embeddings.faiss` is
written. The `metrics` extra (Inception weights for FID/KID) is needed only by `translate --eval`, and its absence
is reported before any training.
"""

from __future__ import annotations

from rich.console import Console

FAISS_HINT = "pip install 'i2icurate[cpu]' (or 'i2icurate[gpu]' on CUDA machines)"
# Commands whose results use a nearest-neighbour index.
USES_FAISS = ("discover", "export")


def have_faiss() -> bool:
    """Whether the `faiss` module (from faiss-cpu or faiss-gpu) can be imported."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def report_optional(command: str, console: Console) -> None:
    """Print one line per optional dependency that `command` would use but is missing, with what changes."""
    if command in USES_FAISS and not have_faiss():
        console.print(f"faiss is not installed: exact neighbours with scikit-learn and no embeddings.faiss "
                      f"(for the index and speed on large folders: {FAISS_HINT})", markup=False, highlight=False)


def require_metrics() -> None:
    """Raise a one-line UserError now, not after training, when FID/KID cannot run (no `metrics` extra)."""
    from i2icurate.metrics.fid import check_weights

    check_weights()
