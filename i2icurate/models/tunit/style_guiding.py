"""TUNIT's guiding network for `--domains style`: the heads read how images are rendered, not what they show.

The trunk is a `StyleTrunk` (per-stage channel statistics, early Gram statistics, rendering statistics). The
descriptor, fitted to the folder:
1. every column standardised;
2. the per-stage block and the Gram block each L2-normalised map by map (every map counts alike), then whitened on
   its first `WHITEN_DIM` principal axes (so that neither the many Gram columns nor one loud stage dominates);
3. those two whitened blocks beside the standardised rendering statistics, projected on the first `pca_dim`
   principal axes and L2-normalised.
The pooled content features are not read. Measured on the style-domain sets of bench/style_sets.py, these features
separate typefaces, renderings and colour from line-art where the content descriptor groups by letter, scene or
emoji (bench/RESULTS.md, "Style domains"); on content sets they do worse, hence a choice rather than a default.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from i2icurate.models.backbones import Backbone
from i2icurate.models.backbones.style_trunk import StyleTrunk
from i2icurate.models.tunit.pretrained_guiding import PretrainedGuidingNetwork, _l2, principal_axes

WHITEN_DIM = 32


def _blockwise_l2(x: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """Each consecutive block of `sizes` columns L2-normalised, the blocks weighted by 1/sqrt(their number)."""
    parts = [_l2(part) for part in torch.split(x, list(sizes), dim=1)]
    return torch.cat(parts, 1) / len(parts) ** 0.5


class StyleGuidingNetwork(PretrainedGuidingNetwork):
    """Guiding network on a `StyleTrunk` around a frozen `Backbone`; same interface as `PretrainedGuidingNetwork`
    (`style_weight`, the content descriptor's balance of its two parts, is kept in the signature and not read)."""

    def __init__(self, backbone: Backbone, k: int, style_dim: int, n_heads: int = 5, pca_dim: int = 64,
                 style_weight: float = 1.0, hidden: int = 256) -> None:
        trunk = StyleTrunk(backbone)
        super().__init__(trunk, k, style_dim, n_heads, pca_dim, style_weight, hidden)
        self.blocks = {"stage": trunk.stage_sizes, "gram": trunk.gram_sizes}
        for name, sizes in self.blocks.items():
            self.register_buffer(f"{name}_mean", torch.zeros(sum(sizes)))
            self.register_buffer(f"{name}_axes", torch.zeros(sum(sizes), WHITEN_DIM))
        joined = 2 * WHITEN_DIM + trunk.rendering_width
        self.register_buffer("proj_mean", torch.zeros(joined))
        self.register_buffer("proj", torch.eye(joined, pca_dim))

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(per-stage, Gram, rendering) columns of standardised style statistics."""
        stage, gram = (sum(sizes) for sizes in self.blocks.values())
        return z[:, :stage], z[:, stage : stage + gram], z[:, stage + gram :]

    @torch.no_grad()
    def fit_descriptor(self, content: Tensor, style: Tensor) -> None:
        """Fit the standardisation, the two whitenings and the PCA to the folder's raw trunk outputs."""
        x = style.double().cpu().numpy()  # float64 and numpy, as the content descriptor's fit (reproducible)
        mean, std = x.mean(0), np.maximum(x.std(0, ddof=1), 1e-6)
        self.style_mean.copy_(torch.from_numpy(mean))
        self.style_std.copy_(torch.from_numpy(std))
        z = torch.from_numpy((x - mean) / std)
        *trunk_parts, rendering = self._split(z)
        whitened = []
        for (name, sizes), part in zip(self.blocks.items(), trunk_parts, strict=True):
            block = _blockwise_l2(part, sizes).numpy()
            centre, axes, variances = principal_axes(block, WHITEN_DIM)
            # axes a small folder does not span (no variance) are dropped rather than blown up
            scale = np.where(variances > 1e-9 * max(variances.max(), 1e-30), 1 / np.sqrt(np.abs(variances)), 0.0)
            filled = np.zeros((block.shape[1], WHITEN_DIM))
            filled[:, : axes.shape[1]] = axes * scale
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(centre))
            getattr(self, f"{name}_axes").copy_(torch.from_numpy(filled))
            whitened.append((block - centre) @ filled)
        joined = np.concatenate([*whitened, rendering.numpy()], axis=1)
        centre, axes, _ = principal_axes(joined, self.feat_dim)
        self.proj_mean.copy_(torch.from_numpy(centre))
        self.proj.zero_()[:, : axes.shape[1]] = torch.from_numpy(axes)  # a --pca-dim above the columns: zeros

    def describe(self, content: Tensor, style: Tensor) -> Tensor:
        """The descriptor the heads read (B x feat_dim, unit length); `content` is not used."""
        z = (style.float() - self.style_mean) / self.style_std
        *trunk_parts, rendering = self._split(z)
        whitened = [(_blockwise_l2(part, sizes) - getattr(self, f"{name}_mean")) @ getattr(self, f"{name}_axes")
                    for (name, sizes), part in zip(self.blocks.items(), trunk_parts, strict=True)]
        return _l2((torch.cat([*whitened, rendering], 1) - self.proj_mean) @ self.proj)
