"""The first phase of a discover run on a pretrained trunk: class heads and style head on the cached features.

The class heads follow SCAN (Van Gansbeke et al., ECCV 2020) on a frozen trunk: an image and one of its nearest
neighbours in descriptor space should get the same cluster (consistency), while the batch's mean assignment stays
spread over all K clusters (an entropy term, which is what keeps every cluster in use). Each head starts from the
prototypes of a k-means run with its own seed, or, when a reviewer's labels name an image of every cluster, from the
labels' logistic regression (then every head starts, and stays, in the labels' cluster numbers); the run assigns with
the head whose loss over the whole folder is lowest at the end. With `w_independence` (the `--domains style` default)
each head also pays the mutual information between its clusters and groups of what the images show (k-means of the
cached content features, which a style trunk fills with its edge-map features): a style domain holds every kind of
content, while the partitions SCAN's neighbourhoods otherwise settle on there (by palette, layout, subject) follow
it. With `w_neighbourhood` (also a `--domains style` default) each head pays, for every image, how far the clusters of
the image and those of its K - 1 nearest images by edge map that have it among their own K - 1 lean away from the
folder's: in a folder of style domains the image nearest by outline is often the same thing in another rendering, and
a partition by what the images show puts such neighbourhoods in one cluster. The edge maps are compared as they are or
moment-normalised (centred, scaled, unslanted), whichever gives the folder the more reciprocal neighbourhoods. The
style head learns TUNIT's style code with the MoCo loss between an image's two views.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from i2icurate.data.augment import resize_square, signed_from_u8
from i2icurate.engines.features import crop_moments, neighbours
from i2icurate.metrics.k_choice import sample_rows
from i2icurate.models.backbones.rendering import edge_map
from i2icurate.models.tunit.style_guiding import CROP_FIT_IMAGES

FIT_SAMPLE = 50_000  # images the descriptor's standardisation and principal axes are fitted on, at most
# inverse L2 strength of the labelled start (bench/RESULTS.md, session 18: 10 to 10^4 within a point of each other on
# the style sets with 3 and 30 labels per class, 1 and 0.1 up to 6 points lower)
LABEL_START_C = 10.0
# content groups of the independence term (bench/RESULTS.md, session 19: 8 weaker on both sets measured, 16 to 64 within
# the replays' spread)
CONTENT_GROUPS = 16
INDEPENDENCE_SAMPLE = 4096  # images the term reads per update (the whole folder when smaller)
EDGE_SIZE = 32  # edge maps of the neighbourhood term are compared at this size (bench/RESULTS.md, session 22)
MOMENT_SPREAD = 0.35  # root-mean-square radius of a moment-normalised edge map's mass, in [-1, 1] image coordinates


def scan_loss(p_anchor: Tensor, p_neighbour: Tensor, entropy_weight: float) -> tuple[Tensor, Tensor, Tensor]:
    """(total, consistency, negative entropy of the mean assignment) of two (B, K) probability batches."""
    consistency = -torch.log((p_anchor * p_neighbour).sum(1).clamp_min(1e-7)).mean()
    mean = p_anchor.mean(0)
    neg_entropy = (mean * torch.log(mean.clamp_min(1e-8))).sum()
    return consistency + entropy_weight * neg_entropy, consistency, neg_entropy


def kmeans_prototypes(desc: Tensor, k: int, seed: int) -> Tensor:
    """k unit-length centroids of the rows of `desc` (k-means++ start, one run with this seed)."""
    from sklearn.cluster import KMeans

    x = desc.double().cpu().numpy()  # float64: float32 BLAS sums varied in the last bit between two runs
    sample = x
    if len(x) > 100_000:  # the centroids settle long before a million points
        sample = x[np.random.default_rng(seed).choice(len(x), 100_000, replace=False)]
    centroids = KMeans(k, n_init=1, random_state=seed).fit(sample).cluster_centers_
    return F.normalize(torch.from_numpy(centroids).float(), dim=1)


def content_groups(content: np.ndarray, n_groups: int, seed: int) -> np.ndarray:
    """(N,) group of each row of `content` (N, D): k-means on its standardised first 64 principal components, rows
    L2-normalised, fitted on at most FIT_SAMPLE rows."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    x = np.asarray(content, dtype=np.float64)  # float64: a reproducible fit, as the descriptor's
    rows = sample_rows(len(x), seed, FIT_SAMPLE)
    mean, std = x[rows].mean(0), x[rows].std(0) + 1e-6
    pca = PCA(min(64, len(rows), x.shape[1]), random_state=seed).fit((x[rows] - mean) / std)
    z = pca.transform((x - mean) / std)
    z /= np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
    groups = min(n_groups, len(x))
    return KMeans(groups, n_init=3, random_state=seed).fit(z[rows]).predict(z)


def content_mi(probs: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """Mutual information (nats) between soft cluster assignments `probs` (B, K) and content groups `groups` (B,)."""
    joint = probs.new_zeros(n_groups, probs.shape[1]).index_add_(0, groups, probs) / len(probs)
    independent = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    return (joint * (joint.clamp_min(1e-10).log() - independent.clamp_min(1e-10).log())).sum()


def moment_normalised(edges: Tensor) -> Tensor:
    """(B, 1, S, S) edge maps (0 = no edge) resampled so that each one's edge mass is centred, spreads over a
    root-mean-square radius of MOMENT_SPREAD (image coordinates in [-1, 1]) and leans neither way (the shear of its
    x-y covariance taken out): the moment normalisation of character recognition, which lines up a letter drawn in
    faces of another size, position or slant."""
    b, _, h, w = edges.shape
    ys = torch.linspace(-1, 1, h, device=edges.device).view(1, h, 1)
    xs = torch.linspace(-1, 1, w, device=edges.device).view(1, 1, w)
    mass = edges[:, 0] / edges[:, 0].sum((1, 2), keepdim=True).clamp_min(1e-8)
    cx, cy = (mass * xs).sum((1, 2)), (mass * ys).sum((1, 2))
    dx, dy = xs - cx.view(-1, 1, 1), ys - cy.view(-1, 1, 1)
    vx, vy = (mass * dx**2).sum((1, 2)).clamp_min(1e-4), (mass * dy**2).sum((1, 2)).clamp_min(1e-4)
    shear = (mass * dx * dy).sum((1, 2)) / vy
    scale = torch.sqrt(vx + vy) / MOMENT_SPREAD
    theta = torch.zeros(b, 2, 3, device=edges.device)  # output (u, v) reads input (cx + s u + shear s v, cy + s v)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = scale, shear * scale, cx
    theta[:, 1, 1], theta[:, 1, 2] = scale, cy
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=True)
    return F.grid_sample(edges, grid, align_corners=True, padding_mode="zeros")


def edge_vectors(images_u8: np.ndarray, normalised: bool = False, chunk: int = 1024) -> np.ndarray:
    """(N, EDGE_SIZE²) float32: the inverted edge map (`rendering.edge_map`, 0 = no edge) of each (N, S, S, 3) uint8
    image, resized to EDGE_SIZE px first; `normalised`: then `moment_normalised`."""
    rows = []
    for start in range(0, len(images_u8), chunk):
        x = resize_square(signed_from_u8(images_u8[start : start + chunk]), EDGE_SIZE)
        edges = (1 - edge_map(x)[:, :1]) / 2
        rows.append((moment_normalised(edges) if normalised else edges).flatten(1).numpy())
    return np.concatenate(rows).astype(np.float32)


def edge_neighbours(images_u8: np.ndarray, k: int, normalised: bool = False) -> Tensor:
    """(N, k) indices of each image's k nearest other images by edge map (`edge_vectors`, each pixel standardised over
    the folder, cosine)."""
    x = edge_vectors(images_u8, normalised)
    mean, std = x.mean(0, dtype=np.float64), x.std(0, dtype=np.float64) + 1e-6
    return neighbours(torch.from_numpy(((x - mean) / std).astype(np.float32)), k)


def folder_edge_neighbours(images_u8: np.ndarray, k: int) -> tuple[Tensor, Tensor, bool]:
    """(`edge_neighbours` of the folder, their `reciprocal` mask, whether moment-normalised): of the edge maps as they
    are and normalised, the version whose neighbours are more often reciprocal. Where each thing is drawn once per
    style, the neighbourhoods that find it across styles are the reciprocal ones (bench/RESULTS.md, session 23: the
    share of reciprocal neighbours ranked the two versions as the share showing the same thing did on all four style
    sets)."""
    found = {}
    for normalised in (False, True):
        nbrs = edge_neighbours(images_u8, k, normalised)
        found[normalised] = nbrs, reciprocal(nbrs)
    normalised = bool(found[True][1].float().mean() > found[False][1].float().mean())
    return *found[normalised], normalised


def reciprocal(nbrs: Tensor) -> Tensor:
    """(N, k) bool: whether each image is among its neighbour's own k neighbours (`nbrs` (N, k) indices)."""
    n, k = nbrs.shape
    rows = torch.arange(n, device=nbrs.device).repeat_interleave(k)
    cols = nbrs.flatten().long()
    return torch.isin(cols * n + rows, rows * n + cols).view(n, k)


def neighbourhood_spread(p_self: Tensor, p_nbrs: Tensor, weights: Tensor | None = None) -> Tensor:
    """Mean KL divergence (nats) from the batch's mean assignment of each image's neighbourhood assignment: the mean
    of its own (B, K) and its neighbours' (B, k, K) probabilities (neighbours weighted by `weights` (B, k), default 1).
    0 when every neighbourhood spreads over the clusters as the batch does, log K when each sits in one cluster of K
    used evenly. An image none of whose neighbours weighs anything is left out of the mean (0 when all are)."""
    w = torch.ones(p_nbrs.shape[:2], device=p_nbrs.device) if weights is None else weights
    q = (p_self + (w[..., None] * p_nbrs).sum(1)) / (1 + w.sum(1, keepdim=True))
    mean = p_self.mean(0, keepdim=True)
    kl = (q * (q.clamp_min(1e-10).log() - mean.clamp_min(1e-10).log())).sum(1)
    counted = (w.sum(1) > 0).to(kl.dtype)
    return (kl * counted).sum() / counted.sum().clamp_min(1)


def label_start(desc: Tensor, labels: Tensor, k: int, c: float = LABEL_START_C) -> tuple[Tensor, Tensor] | None:
    """(weight (k, D), bias (k,)) of a multinomial logistic regression of the labelled rows of `desc` (views, N, D),
    every view of an image with its label (`labels` (N,), -1 = none), or None unless each of the k clusters has a
    labelled image."""
    from sklearn.linear_model import LogisticRegression

    known = (labels >= 0).cpu()
    targets = labels.cpu()[known].numpy()
    if k < 2 or len(np.unique(targets)) < k:
        return None
    x = desc[:, known.to(desc.device)].double().cpu().numpy()  # (views, n, D), float64: reproducible fit
    y = np.tile(targets, x.shape[0])
    model = LogisticRegression(C=c, max_iter=5000).fit(x.reshape(-1, x.shape[-1]), y)
    weight, bias = model.coef_, model.intercept_
    if k == 2:  # scikit-learn keeps one row for two classes: the same softmax from two halves
        weight, bias = np.concatenate([-weight / 2, weight / 2]), np.concatenate([-bias / 2, bias / 2])
    return torch.from_numpy(weight).float(), torch.from_numpy(bias).float()


class HeadPhase:
    """Holds the descriptors (views, N, D) and neighbour lists of a run, and trains E's heads on them."""

    def __init__(self, guiding: torch.nn.Module, content: np.ndarray | None, style: np.ndarray | None,
                 cfg: dict[str, Any], device: torch.device, chunk: int = 8192, keep: Tensor | None = None,
                 images: np.ndarray | None = None, crop_moments: tuple[Tensor, Tensor] | None = None) -> None:
        """`keep`: optional (N,) bool, False for images a reviewer excluded: they stay in the descriptor space, but no
        loss term (as an image or as a neighbour) and no head score reads them. `images`: the (N, S, S, 3) uint8
        cache, which the neighbourhood term (`w_neighbourhood`) finds its edge-map neighbours in. `crop_moments`: a
        style trunk's crop moments stored with the features (`engines.features.cached_crop_moments`); without them
        the descriptor's fit computes them on up to CROP_FIT_IMAGES of `images`."""
        self.E, self.cfg, self.device = guiding, cfg, device
        self.content, self.style, self.images = content, style, images
        self.crop_moments = crop_moments
        self.chunk = chunk
        self.keep = None if keep is None else keep.to(device)
        self.desc: Tensor | None = None
        self.nbrs: Tensor | None = None
        self.groups: Tensor | None = None  # content groups of the independence term, when it has a weight
        self.n_groups = 0
        self.edge_nbrs: Tensor | None = None  # (N, K - 1) edge-map neighbours of the neighbourhood term
        self.edge_weights: Tensor | None = None  # (N, K - 1) 1 where the neighbour is reciprocal and kept, else 0
        self.edge_normalised: bool | None = None  # whether the edge maps were moment-normalised for this folder

    @classmethod
    def on_descriptors(cls, guiding: torch.nn.Module, desc: Tensor, cfg: dict[str, Any],
                       device: torch.device) -> HeadPhase:
        """A phase over ready descriptors (views, N, D) instead of trunk features: nothing to fit or cache, the
        neighbours found on the first view. `guiding` needs only `heads` and `k`."""
        phase = cls(guiding, None, None, cfg, device)
        phase.desc = desc.to(device)
        phase.nbrs = neighbours(phase.desc[0], cfg["knn"]).to(device)
        return phase

    @torch.no_grad()
    def fit(self, labels: Tensor | None = None) -> None:
        """A fresh run: fit the descriptor to this folder, then start the heads (`start_heads`)."""
        self.fit_descriptor()
        self.prepare()
        self.start_heads(labels)

    @torch.no_grad()
    def start_heads(self, labels: Tensor | None = None) -> None:
        """With `labels` ((N,), -1 = none) naming an image of every cluster: every head starts as the logistic
        regression of the labelled images (`label_start`), so that it begins in the labels' cluster numbers (the
        heads are then alike: a k-means start with its own numbering lost the labels' partition when SCAN chose the
        head, bench/RESULTS.md). Otherwise head h starts from the prototypes of a k-means run with seed `seed + h` on
        the first view."""
        if labels is not None and self.keep is not None:  # an excluded image teaches nothing
            labels = torch.where(self.keep.cpu(), labels.cpu(), torch.full_like(labels.cpu(), -1))
        start = None if labels is None else label_start(self.desc, labels, self.E.k)
        if start is not None:
            for head in self.E.heads:
                head.weight.copy_(start[0].to(self.device))
                head.bias.copy_(start[1].to(self.device))
            return
        tau = self.cfg["head_temperature"]
        for h, head in enumerate(self.E.heads):
            head.weight.copy_(kmeans_prototypes(self.desc[0], self.E.k, self.cfg["seed"] + h).to(self.device) / tau)
            head.bias.zero_()

    @torch.no_grad()
    def fit_descriptor(self) -> None:
        """Fit E's descriptor (standardisation and principal axes) to the first view of this folder's features."""
        # the statistics and axes settle long before a million images (and float64 would not fit)
        rows = sample_rows(self.content.shape[1], self.cfg["seed"], FIT_SAMPLE)
        first = (torch.from_numpy(np.asarray(self.content[0][rows], dtype=np.float32)),
                 torch.from_numpy(np.asarray(self.style[0][rows], dtype=np.float32)))
        extra = {}
        if hasattr(self.E.trunk, "crop_statistics"):  # a style descriptor also fits on the crops' statistics
            if self.crop_moments is None:  # features from before the moments were stored with them
                if self.images is None:
                    raise ValueError("the style descriptor's fit reads the decoded images or the stored crop "
                                     "moments: give HeadPhase `images` or `crop_moments`")
                crop_rows = sample_rows(len(self.images), self.cfg["seed"], CROP_FIT_IMAGES)
                self.crop_moments = crop_moments(self.E.trunk, self.images[crop_rows], self.device)
            extra["crop_moments"] = self.crop_moments
        self.E.fit_descriptor(*(t.to(self.device) for t in first), **extra)

    @torch.no_grad()
    def descriptors(self, view: int) -> Tensor:
        """The descriptors (N, D) of one view of every image, with E's current fit."""
        rows = []
        for start in range(0, self.content.shape[1], self.chunk):
            c = torch.from_numpy(np.array(self.content[view, start : start + self.chunk], dtype=np.float32))
            s = torch.from_numpy(np.array(self.style[view, start : start + self.chunk], dtype=np.float32))
            rows.append(self.E.describe(c.to(self.device), s.to(self.device)))
        return torch.cat(rows)

    @torch.no_grad()
    def start_cluster(self, row: int, members: Tensor) -> None:
        """Start cluster `row` of every head at the mean descriptor of the images `members` ((N,) bool), scaled as
        the k-means prototypes are (unit length over the temperature), its bias the mean of the other clusters'."""
        centre = F.normalize(self.desc[0][members.to(self.device)].mean(0), dim=0) / self.cfg["head_temperature"]
        for head in self.E.heads:
            head.weight[row] = centre
            head.bias[row] = torch.cat([head.bias[:row], head.bias[row + 1 :]]).mean()

    @torch.no_grad()
    def prepare(self) -> None:
        """Descriptors of every view with E's current fit, and each image's nearest neighbours."""
        self.desc = torch.stack([self.descriptors(v) for v in range(self.content.shape[0])])
        self.nbrs = neighbours(self.desc[0], self.cfg["knn"]).to(self.device)
        if self.cfg.get("w_independence", 0.0) > 0:
            found = content_groups(self.content[0], CONTENT_GROUPS, self.cfg["seed"])
            self.groups = torch.from_numpy(found).long().to(self.device)
            self.n_groups = int(found.max()) + 1
        if self.cfg.get("w_neighbourhood", 0.0) > 0 and self.images is not None:
            # one neighbour per other domain, where each draws the same things (the nearest only: photo renderings
            # 0.914 / 0.801 on two seeds against 0.940 / 0.908, four typefaces 0.632 / 0.633 against 0.556 / 0.584;
            # bench/RESULTS.md, session 22); on the edge maps moment-normalised where that makes them more often
            # reciprocal (four typefaces 0.594 / 0.596 -> 0.681 / 0.684, two 0.975 / 0.976 -> 0.973 / 0.971, the
            # photos and emoji keep the maps as they are; session 23)
            found, mutual, self.edge_normalised = folder_edge_neighbours(self.images, max(1, self.E.k - 1))
            self.edge_nbrs = found.to(self.device)
            # only reciprocal neighbours count: they are the same thing in another rendering more often (photo
            # renderings 0.88 against 0.72, emoji 0.86 against 0.70), and the run gains on three of four style sets
            # (bench/RESULTS.md, session 23)
            weights = mutual.float().to(self.device)
            if self.keep is not None:  # an excluded image weighs nothing as a neighbour
                weights = weights * self.keep[self.edge_nbrs].float()
            self.edge_weights = weights

    def _independence_rows(self, gen: torch.Generator) -> Tensor:
        """The images the independence term reads: every kept image, or INDEPENDENCE_SAMPLE of them drawn by `gen`."""
        rows = torch.arange(self.desc.shape[1], device=self.device)
        if self.keep is not None:
            rows = rows[self.keep]
        if len(rows) > INDEPENDENCE_SAMPLE:
            rows = rows[torch.randint(len(rows), (INDEPENDENCE_SAMPLE,), generator=gen, device=self.device)]
        return rows

    def independence(self, head: torch.nn.Module, rows: Tensor) -> Tensor:
        """The head's content mutual information over the images `rows` (first view)."""
        return content_mi(F.softmax(head(self.desc[0, rows]), 1), self.groups[rows], self.n_groups)

    def spread(self, probs: Tensor, nbr_probs: Tensor, rows: Tensor) -> Tensor:
        """`neighbourhood_spread` of the images `rows` given their (B, K) and their edge-map neighbours' (B, k, K)
        probabilities, each neighbour weighted by `edge_weights`."""
        return neighbourhood_spread(probs, nbr_probs, self.edge_weights[rows])

    def losses(self, idx: Tensor, gen: torch.Generator, labels: Tensor | None,
               anchors: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """The class heads' SCAN loss (summed over heads), the supervised term for labelled images of `idx` and the
        anchor term for images a review left untouched."""
        cfg, b = self.cfg, len(idx)
        n_views = min(self.desc.shape[0], cfg.get("head_views", self.desc.shape[0]))
        pick = torch.randint(self.nbrs.shape[1], (b,), generator=gen, device=self.device)
        nbr = self.nbrs[idx, pick]
        va = torch.randint(n_views, (b,), generator=gen, device=self.device)
        vb = torch.randint(n_views, (b,), generator=gen, device=self.device)
        x_a, x_b = self.desc[va, idx], self.desc[vb, nbr]
        if self.keep is not None:  # drop the pairs with an excluded image; the others are the ones drawn without it
            kept = self.keep[idx] & self.keep[nbr]
            if not bool(kept.all()):
                idx, x_a, x_b = idx[kept], x_a[kept], x_b[kept]
        total = x_a.new_zeros(())
        cons, ent, sup = 0.0, 0.0, None
        known = self._targets(labels, idx)
        anchored = self._targets(anchors, idx)
        anchor, mi, spread = None, None, None
        rows = None if self.groups is None and self.edge_nbrs is None else self._independence_rows(gen)
        for head in self.E.heads:
            logits_a = head(x_a)
            loss, c, e = scan_loss(F.softmax(logits_a, 1), F.softmax(head(x_b), 1), cfg["w_entropy"])
            total = total + loss
            cons, ent = cons + c.item(), ent + e.item()
            if known is not None:  # a reviewer's labels: cross-entropy on every head
                ce = F.cross_entropy(logits_a[known >= 0], known[known >= 0])
                total = total + cfg["w_sup"] * ce
                sup = ce.item() + (sup or 0.0)
            if anchored is not None:  # untouched clusters keep their members
                ce = F.cross_entropy(logits_a[anchored >= 0], anchored[anchored >= 0])
                total = total + cfg.get("w_anchor", 1.0) * ce
                anchor = ce.item() + (anchor or 0.0)
            # the two terms read the same images' probabilities (first view)
            probs = None if rows is None else F.softmax(head(self.desc[0, rows]), 1)
            if self.groups is not None:  # a style domain holds every kind of content
                term = content_mi(probs, self.groups[rows], self.n_groups)
                total = total + cfg["w_independence"] * term
                mi = term.item() + (mi or 0.0)
            if self.edge_nbrs is not None:  # ... and its outlines in another rendering lie in another domain
                term = self.spread(probs, F.softmax(head(self.desc[0, self.edge_nbrs[rows]]), -1), rows)
                total = total + cfg["w_neighbourhood"] * term
                spread = term.item() + (spread or 0.0)
        n = len(self.E.heads)
        out = {"loss/scan_consistency": cons / n, "loss/scan_entropy": -ent / n}
        if sup is not None:
            out["loss/sup_ce"] = sup / n
        if anchor is not None:
            out["loss/anchor_ce"] = anchor / n
        if mi is not None:
            out["loss/content_mi"] = mi / n
        if spread is not None:
            out["loss/edge_spread"] = spread / n
        return total, out

    def _targets(self, targets: Tensor | None, idx: Tensor) -> Tensor | None:
        """The per-image targets (-1 = none) of the batch, or None when the batch has none."""
        if targets is None:
            return None
        picked = targets[idx.cpu()].to(self.device)
        return picked if bool((picked >= 0).any()) else None

    def style_views(self, idx: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Two different views' descriptors of the images `idx` (the style head's positive pairs)."""
        n_views = self.desc.shape[0]
        va = torch.randint(n_views, (len(idx),), generator=gen, device=self.device)
        vb = (va + 1) % n_views
        return self.desc[va, idx], self.desc[vb, idx]

    @torch.no_grad()
    def head_scores(self) -> list[float]:
        """Each head's SCAN loss over the whole folder (first view, all neighbours), with the independence and
        neighbourhood terms where they have a weight, excluded images left out."""
        scores = []
        desc = self.desc[0]
        rows = torch.arange(len(desc), device=desc.device)
        if self.keep is not None:
            rows = rows[self.keep]
        for head in self.E.heads:
            total = 0.0
            probs = F.softmax(head(desc), 1)
            for start in range(0, len(rows), self.chunk):
                chunk = rows[start : start + self.chunk]
                p = probs[chunk]
                q = probs[self.nbrs[chunk]]  # (b, knn, K)
                total += -torch.log((p[:, None, :] * q).sum(-1).clamp_min(1e-7)).mean(1).sum().item()
            mean = probs[rows].mean(0)
            neg_entropy = (mean * torch.log(mean.clamp_min(1e-8))).sum().item()
            score = total / len(rows) + self.cfg["w_entropy"] * neg_entropy
            if self.groups is not None:
                score += self.cfg["w_independence"] * content_mi(probs[rows], self.groups[rows], self.n_groups).item()
            if self.edge_nbrs is not None:
                spread = self.spread(probs[rows], probs[self.edge_nbrs[rows]], rows)
                score += self.cfg["w_neighbourhood"] * spread.item()
            scores.append(score)
        return scores

    @torch.no_grad()
    def choose_best(self, *networks: torch.nn.Module) -> list[float]:
        """Make the head with the lowest folder-wide loss the one `networks` assign with; returns the scores."""
        scores = self.head_scores()
        best = int(np.argmin(scores))
        for net in networks:
            net.best.fill_(best)
        return scores
