"""TUNIT's guiding network for `--domains style`: the heads read how images are rendered, not what they show.

The trunk is a `StyleTrunk` (per-stage channel statistics, early Gram statistics, rendering statistics). The
descriptor, fitted to the folder:
1. every column standardised;
2. the per-stage block and the Gram block each L2-normalised map by map (every map counts alike), then whitened on
   its first `WHITEN_DIM` principal axes (so that neither the many Gram columns nor one loud stage dominates);
3. those two whitened blocks beside the standardised rendering statistics, projected on the first `pca_dim`
   principal axes and L2-normalised;
4. beside it, what the image's crops agree on (`CROP_DIM` columns, L2-normalised and weighted by `crop_weight`; the
   whole scaled back to unit length): the same statistics of single crops (`StyleTrunk.crop_statistics`, their moments
   accumulated over every image by the feature pass, or over up to `CROP_FIT_IMAGES` of them for a run made before)
   standardised and whitened on their first `CROP_WHITEN_DIM` principal
   axes; there, the principal axes of the images' crop means are the directions along which images differ most
   against how much the crops of one image differ (linear discriminant analysis with every image a class). A glyph's
   crops show different strokes of one typeface, a photo's crops different things in one rendering: what they share
   is mostly the style;
5. with `content_centring` w > 0: minus w times the mean descriptor of the image's layout group, L2-normalised again.
   The layout groups are `LAYOUT_GROUPS` k-means groups of the trunk's `layout` features (pooled features of the edge
   map), so they gather the same letter, scene or emoji across the folder's styles; taking out the group's mean takes
   out what the picture adds to the style statistics (a diagonal-stroked A or V of an oblique face otherwise sits
   beside the upright serif's), and leaves how this image differs from the same picture in the other styles.
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
from i2icurate.models.tunit.pretrained_guiding import (
    PretrainedGuidingNetwork,
    _l2,
    covariance_axes,
    principal_axes,
)

WHITEN_DIM = 32
# principal axes of the crops' statistics kept before the discriminant analysis (256 against 128, session 27: the
# eight runs of the four style sets each gained 0 to 1.7 points, four typefaces 0.882 / 0.885 -> 0.899 / 0.892; 512
# gave 0.895)
CROP_WHITEN_DIM = 256
CROP_DIM = 16  # discriminant axes in the descriptor
# images whose crops the whitening is fitted on, at most (8 crops each; 512 of the 1,440 photo renderings left their
# run at 0.769 against 0.893 with all of them, bench/RESULTS.md, session 26)
CROP_FIT_IMAGES = 4096
# k-means groups of the layout features whose mean descriptor `content_centring` takes out, and the principal axes
# they are found on (as the heads' content groups, engines/heads.py). k-means with K = the styles on the descriptors of
# session 28's seed-0 runs, each group's mean taken out in full: 8 / 12 / 16 / 24 groups gave four typefaces 0.899 /
# 0.929 / 0.932 / 0.916, two typefaces 0.975 / 0.968 / 0.956 / 0.895, the photo renderings 0.835 / 0.822 / 0.828 /
# 0.861, where the same k-means without the centring gave 0.631, 0.733 and 0.615 (bench/RESULTS.md, session 29).
LAYOUT_GROUPS = 16
LAYOUT_DIM = 64


def _whitening_scale(variances: np.ndarray) -> np.ndarray:
    """1 / sqrt(variance) of each principal axis; 0 for axes a small folder does not span (no variance), which are
    dropped rather than blown up."""
    return np.where(variances > 1e-9 * max(variances.max(), 1e-30), 1 / np.sqrt(np.abs(variances)), 0.0)


def _blockwise_l2(x: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """Each consecutive block of `sizes` columns L2-normalised, the blocks weighted by 1/sqrt(their number)."""
    parts = [_l2(part) for part in torch.split(x, list(sizes), dim=1)]
    return torch.cat(parts, 1) / len(parts) ** 0.5


class StyleGuidingNetwork(PretrainedGuidingNetwork):
    """Guiding network on a `StyleTrunk` around a frozen `Backbone`; same interface as `PretrainedGuidingNetwork`
    (`style_weight`, the content descriptor's balance of its two parts, is kept in the signature and not read)."""

    OPTIONS = ("crop_weight", "content_centring")

    def __init__(self, backbone: Backbone, k: int, style_dim: int, n_heads: int = 5, pca_dim: int = 64,
                 style_weight: float = 1.0, hidden: int = 256, *, crop_weight: float,
                 content_centring: float = 0.0) -> None:
        trunk = StyleTrunk(backbone)
        super().__init__(trunk, k, style_dim, n_heads, pca_dim, style_weight, hidden)
        self.crop_weight = crop_weight
        self.statistics_dim = trunk.statistics_dim
        self.blocks = {"stage": trunk.stage_sizes, "gram": trunk.gram_sizes}
        for name, sizes in self.blocks.items():
            self.register_buffer(f"{name}_mean", torch.zeros(sum(sizes)))
            self.register_buffer(f"{name}_axes", torch.zeros(sum(sizes), WHITEN_DIM))
        joined = 2 * WHITEN_DIM + trunk.rendering_width
        self.register_buffer("proj_mean", torch.zeros(joined))
        self.register_buffer("proj", torch.eye(joined, pca_dim))
        # the crop part: standardisation of one crop's statistics, then whitening and discriminant axes in one matrix
        self.register_buffer("crop_mean", torch.zeros(trunk.statistics_dim))
        self.register_buffer("crop_std", torch.ones(trunk.statistics_dim))
        self.register_buffer("crop_axes", torch.zeros(trunk.statistics_dim, CROP_DIM))
        self.register_buffer("crop_offset", torch.zeros(CROP_DIM))
        self.content_centring = content_centring
        if content_centring > 0:  # only then: a run made before the option loads its checkpoint as it was saved
            layout_dim = min(LAYOUT_DIM, trunk.content_dim)
            self.register_buffer("layout_axes", torch.zeros(trunk.content_dim, layout_dim))
            self.register_buffer("layout_centroids", torch.zeros(LAYOUT_GROUPS, layout_dim))
            self.register_buffer("group_means", torch.zeros(LAYOUT_GROUPS, self.feat_dim))

    def descriptor_width(self, pca_dim: int) -> int:
        """`pca_dim` columns of the image's statistics and CROP_DIM of what its crops agree on."""
        return pca_dim + CROP_DIM

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(per-stage, Gram, rendering) columns of standardised style statistics."""
        stage, gram = (sum(sizes) for sizes in self.blocks.values())
        return z[:, :stage], z[:, stage : stage + gram], z[:, stage + gram : self.statistics_dim]

    @torch.no_grad()
    def fit_descriptor(self, content: Tensor, style: Tensor,
                       crop_moments: tuple[Tensor, Tensor] | None = None) -> None:
        """Fit the standardisation, the two whitenings and the PCA to the folder's raw trunk outputs (N x style_dim),
        and the crop part to `crop_moments`, the (mean, covariance) of single crops' `StyleTrunk.crop_statistics`
        over (a sample of) its images (`engines.features.crop_moments`)."""
        if crop_moments is None:
            raise ValueError("a style descriptor is fitted with the moments of its folder's crop statistics")
        self._fit_crops(crop_moments, style[:, self.statistics_dim :].double().cpu().numpy())
        x = style[:, : self.statistics_dim].double().cpu().numpy()  # float64 and numpy, as the content fit
        mean, std = x.mean(0), np.maximum(x.std(0, ddof=1), 1e-6)
        self.style_mean.zero_()[: self.statistics_dim] = torch.from_numpy(mean)
        self.style_std.fill_(1.0)[: self.statistics_dim] = torch.from_numpy(std)
        z = torch.from_numpy((x - mean) / std)
        *trunk_parts, rendering = self._split(z)
        whitened = []
        for (name, sizes), part in zip(self.blocks.items(), trunk_parts, strict=True):
            block = _blockwise_l2(part, sizes).numpy()
            centre, axes, variances = principal_axes(block, WHITEN_DIM)
            scale = _whitening_scale(variances)
            filled = np.zeros((block.shape[1], WHITEN_DIM))
            filled[:, : axes.shape[1]] = axes * scale
            getattr(self, f"{name}_mean").copy_(torch.from_numpy(centre))
            getattr(self, f"{name}_axes").copy_(torch.from_numpy(filled))
            whitened.append((block - centre) @ filled)
        joined = np.concatenate([*whitened, rendering.numpy()], axis=1)
        centre, axes, _ = principal_axes(joined, self.pca_dim)
        self.proj_mean.copy_(torch.from_numpy(centre))
        self.proj.zero_()[:, : axes.shape[1]] = torch.from_numpy(axes)  # a --pca-dim above the columns: zeros
        if self.content_centring > 0:
            self._fit_layout_groups(content, style)

    def _fit_layout_groups(self, content: Tensor, style: Tensor) -> None:
        """The layout groups (standardisation, principal axes and k-means centroids of the layout features in
        `content`) and each group's mean uncentred descriptor."""
        from sklearn.cluster import KMeans

        x = content.double().cpu().numpy()
        mean, std = x.mean(0), np.maximum(x.std(0, ddof=1), 1e-6)
        centre, axes, _ = principal_axes((x - mean) / std, self.layout_axes.shape[1])
        # the standardisation and the centring folded into the projection: ((x - mean) / std - centre) @ axes
        self.content_mean.copy_(torch.from_numpy(mean + centre * std))
        self.content_std.copy_(torch.from_numpy(std))
        self.layout_axes.zero_()[:, : axes.shape[1]] = torch.from_numpy(axes)
        z = self._layout(content).double().cpu().numpy()
        groups = min(LAYOUT_GROUPS, len(z))
        found = KMeans(groups, n_init=3, random_state=0).fit(z)
        # fewer images than groups: the spare centroids sit far away and take no image
        self.layout_centroids.fill_(1e3)[:groups] = torch.from_numpy(found.cluster_centers_)
        desc = self._uncentred(content, style)
        labels = torch.from_numpy(found.labels_).to(desc.device)
        sums = desc.new_zeros(self.group_means.shape).index_add_(0, labels, desc)
        counts = torch.bincount(labels, minlength=LAYOUT_GROUPS).clamp_min(1)
        self.group_means.copy_(sums / counts[:, None])

    def _layout(self, content: Tensor) -> Tensor:
        """Unit-length principal components of standardised layout features (B, layout dims)."""
        return _l2(((content.float() - self.content_mean) / self.content_std) @ self.layout_axes)

    def layout_groups(self, content: Tensor) -> Tensor:
        """(B,) layout group of each row of layout features (the nearest centroid)."""
        z = self._layout(content)
        return (self.layout_centroids.pow(2).sum(1) - 2 * z @ self.layout_centroids.T).argmin(1)

    def _fit_crops(self, crop_moments: tuple[Tensor, Tensor], crop_means: np.ndarray) -> None:
        """The crop part from the (mean (D,), covariance (D, D)) of single crops' statistics and the folder's crop
        means (N, D), float64."""
        mean, cov = (t.double().cpu().numpy() for t in crop_moments)
        std = np.maximum(np.sqrt(np.clip(np.diag(cov), 0, None)), 1e-6)
        # no more axes than images: the crop means span at most that many directions, and a small folder's
        # smallest crop variances are mostly noise that whitening would blow up (120 glyphs, tests/
        # test_style_domains.py: the crop part's typeface separation 0.140 on 256 axes against 0.147 on 128)
        axes, variances = covariance_axes(cov / np.outer(std, std), min(CROP_WHITEN_DIM, len(crop_means)))
        # whitened on the crops' spread, so that the crop means' principal axes are the discriminant ones
        scale = _whitening_scale(variances)
        whiten = axes * scale
        between_centre, between_axes, _ = principal_axes(((crop_means - mean) / std) @ whiten, CROP_DIM)
        combined = np.zeros((len(mean), CROP_DIM))
        combined[:, : between_axes.shape[1]] = whiten @ between_axes
        self.crop_mean.copy_(torch.from_numpy(mean))
        self.crop_std.copy_(torch.from_numpy(std))
        self.crop_axes.copy_(torch.from_numpy(combined))
        # ((z @ whiten) - between_centre) @ between_axes = z @ combined - offset
        offset = np.zeros(CROP_DIM)
        offset[: between_axes.shape[1]] = between_centre @ between_axes
        self.crop_offset.copy_(torch.from_numpy(offset))

    def describe(self, content: Tensor, style: Tensor) -> Tensor:
        """The descriptor the heads read (B x feat_dim, unit length); `content`, the trunk's layout features, is
        read only with `content_centring`."""
        desc = self._uncentred(content, style)
        if self.content_centring <= 0:
            return desc
        return _l2(desc - self.content_centring * self.group_means[self.layout_groups(content)])

    def _uncentred(self, content: Tensor, style: Tensor) -> Tensor:
        """The descriptor before `content_centring` (B x feat_dim, unit length)."""
        z = (style.float() - self.style_mean) / self.style_std
        *trunk_parts, rendering = self._split(z)
        whitened = [(_blockwise_l2(part, sizes) - getattr(self, f"{name}_mean")) @ getattr(self, f"{name}_axes")
                    for (name, sizes), part in zip(self.blocks.items(), trunk_parts, strict=True)]
        image = _l2((torch.cat([*whitened, rendering], 1) - self.proj_mean) @ self.proj)
        crops = (style[:, self.statistics_dim :].float() - self.crop_mean) / self.crop_std
        agreed = _l2(crops @ self.crop_axes - self.crop_offset)
        return torch.cat([image, agreed * self.crop_weight], 1) / (1 + self.crop_weight**2) ** 0.5
