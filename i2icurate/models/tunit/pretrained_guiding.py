"""TUNIT's guiding network E on a frozen pretrained trunk: several clustering heads and a style head.

The trunk (models/backbones) describes an image by its pooled features (content) and the channel statistics of
its stages (style). Each part is standardised with the folder's own statistics and L2-normalised, the style part
weighted by `style_weight`, concatenated, projected on the folder's first `pca_dim` principal axes and
L2-normalised into one descriptor. On it:
- `heads`: several linear class heads (cosine prototypes over a temperature), initialised from k-means with
  different seeds and trained together with SCAN's neighbour-consistency loss; `best` (a buffer) is the head the
  run assigns with, the one with the lowest loss at the end of head training;
- `cont`: the style head (Linear-ReLU-Linear) giving TUNIT's style code.
`forward` has the signature of the from-scratch `GuidingNetwork`, so the generator, export and translators use
either unchanged.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2icurate.models.backbones import Backbone


def _l2(x: Tensor) -> Tensor:
    return F.normalize(x, dim=1, eps=1e-8)


def principal_axes(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, the first `dim` principal axes as columns, their variances) of the rows of float64 `x`."""
    mean = x.mean(0)
    # from the covariance (columns x columns, whatever the number of rows)
    return mean, *covariance_axes(np.cov(x - mean, rowvar=False), dim)


def covariance_axes(cov: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(the first `dim` eigenvectors of a float64 covariance matrix as columns, their eigenvalues), largest first."""
    values, vectors = np.linalg.eigh(cov)
    axes = vectors[:, ::-1][:, :dim]
    # signs fixed so that each axis's largest entry is positive, which makes two fits on the same rows identical
    axes = axes * np.sign(axes[np.abs(axes).argmax(0), np.arange(axes.shape[1])])
    return np.ascontiguousarray(axes), values[::-1][:dim].copy()


class PretrainedGuidingNetwork(nn.Module):
    """Guiding network on a frozen `Backbone`: `forward(x)` gives (logits of the chosen head, style code)."""

    OPTIONS: tuple[str, ...] = ()  # discover options a subclass also takes, by name (keyword arguments)

    def __init__(self, backbone: Backbone | nn.Module, k: int, style_dim: int, n_heads: int = 5, pca_dim: int = 64,
                 style_weight: float = 1.0, hidden: int = 256) -> None:
        super().__init__()
        self.k, self.style_dim, self.style_weight = k, style_dim, style_weight
        self.trunk = backbone
        dims = (backbone.content_dim, backbone.style_dim)
        self.pca_dim = pca_dim
        self.feat_dim = self.descriptor_width(pca_dim)
        # set from the folder's features by `fit_descriptor`: standardisation of each part, then the PCA
        for name, dim in zip(("content", "style"), dims, strict=True):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        self.register_buffer("proj_mean", torch.zeros(sum(dims)))
        self.register_buffer("proj", torch.eye(sum(dims), pca_dim))
        self.register_buffer("best", torch.zeros((), dtype=torch.long))
        self.heads = nn.ModuleList(nn.Linear(self.feat_dim, k) for _ in range(n_heads))
        self.cont = nn.Sequential(nn.Linear(self.feat_dim, hidden), nn.ReLU(), nn.Linear(hidden, style_dim))

    def descriptor_width(self, pca_dim: int) -> int:
        """Columns of the descriptor the heads read, given `--pca-dim`."""
        return pca_dim

    @torch.no_grad()
    def fit_descriptor(self, content: Tensor, style: Tensor) -> None:
        """Fit the standardisation and the PCA to the folder's raw trunk outputs (N x dim each)."""
        # in float64 with numpy, so that two runs on the same features get identical float32 buffers (torch's
        # float32 reductions and its LAPACK differed in the last bits between two runs in one process)
        parts = []
        for name, part in (("content", content), ("style", style)):
            x = part.double().cpu().numpy()
            mean, std = x.mean(0), np.maximum(x.std(0, ddof=1), 1e-6)
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(mean))
            getattr(self, f"{name}_std").copy_(torch.from_numpy(std))
            z = (x - mean) / std
            parts.append(z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-8))
        joined = np.concatenate([parts[0], parts[1] * self.style_weight], axis=1)
        mean, axes, _ = principal_axes(joined, self.pca_dim)
        self.proj_mean.copy_(torch.from_numpy(mean))
        self.proj.copy_(torch.from_numpy(axes))

    def _joined(self, content: Tensor, style: Tensor) -> Tensor:
        c = _l2((content.float() - self.content_mean) / self.content_std)
        s = _l2((style.float() - self.style_mean) / self.style_std) * self.style_weight
        return torch.cat([c, s], dim=1)

    def raw_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The trunk's (content, style statistics) of images in [-1, 1]; cache these, then call `describe`."""
        return self.trunk(x)

    def describe(self, content: Tensor, style: Tensor) -> Tensor:
        """The descriptor the heads read (B x feat_dim, unit length)."""
        return _l2((self._joined(content, style) - self.proj_mean) @ self.proj)

    def head_logits(self, desc: Tensor) -> list[Tensor]:
        """Logits of every class head (each B x k)."""
        return [head(desc) for head in self.heads]

    def forward_descriptor(self, desc: Tensor, grad_logits: bool = True) -> tuple[Tensor, Tensor]:
        """(logits of the chosen head, style code) from descriptors."""
        head = self.heads[int(self.best)]
        if grad_logits:
            return head(desc), self.cont(desc)
        with torch.no_grad():
            logits = head(desc)
        return logits, self.cont(desc)

    def forward(self, x: Tensor, grad_logits: bool = True) -> tuple[Tensor, Tensor]:
        """Return (pseudo-domain logits B x k, style code B x style_dim) of images in [-1, 1]."""
        return self.forward_descriptor(self.describe(*self.trunk(x)), grad_logits)
