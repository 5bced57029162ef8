"""A PCA stand-in for umap-learn, put first on PYTHONPATH by `bench/gpu.py --dry-run` only.

numba compiles UMAP afresh in every process (about 15 s on the 2-core CI machine), and the dry run starts several
processes that lay out a UMAP, so with the real package it could not finish in well under a minute. The stand-in has
the calls i2icurate makes (`UMAP(...)`, `fit_transform`, `transform`) and projects on the first two principal
components. Dry-run "UMAP s" figures time this stand-in; a GPU run uses the real package.
"""

from __future__ import annotations

from typing import Any

import numpy as np

STAND_IN = True


class UMAP:
    """Two principal components in place of a UMAP layout (same constructor and methods as i2icurate uses)."""

    def __init__(self, n_components: int = 2, **_: Any) -> None:
        self.n_components = n_components
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        """Fit the principal axes on `x` and project it."""
        x = np.asarray(x, dtype=np.float32)
        self.mean_ = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - self.mean_, full_matrices=False)
        self.components_ = vt[: self.n_components]
        return self.transform(x)

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Project `x` on the fitted axes."""
        if self.components_ is None:
            raise RuntimeError("fit_transform first")
        out = (np.asarray(x, dtype=np.float32) - self.mean_) @ self.components_.T
        if out.shape[1] < self.n_components:  # fewer features than components
            out = np.pad(out, ((0, 0), (0, self.n_components - out.shape[1])))
        return out.astype(np.float32)
