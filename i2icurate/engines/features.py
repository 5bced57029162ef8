"""The frozen trunk's features of every image, computed once per run and kept in the run folder.

Two views per image (as decoded, and mirrored) are passed through the trunk; the raw (content, style statistics)
outputs are stored as float32 `.npy` files written atomically (a style trunk stores its `layout`, the pooled features of
the image's edge map, as the content of both views), so a resumed run reads them instead of recomputing.
Not float16: some channel means vary little over a folder against their size, and float16 rounding errs by up to
400 times that spread; the standardised descriptor then differed enough that 8.5 % of MNIST-5k images changed
cluster between the heads (trained on the cache) and the export (which runs the trunk in float32).
The clustering heads then train on these features alone, which costs seconds rather than trunk passes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from i2icurate.data.augment import signed_from_u8
from i2icurate.export.spans import row_spans
from i2icurate.runs import atomic_path

CONTENT_NPY = "features_content.npy"
STYLE_NPY = "features_style.npy"
# a style trunk's crop moments: the mean and covariance of single crops' statistics over every image (first view),
# which the style descriptor's crop part is fitted on (models/tunit/style_guiding.py)
CROP_MOMENTS_NPZ = "features_crop_moments.npz"
VIEWS = 2  # as decoded, mirrored
# What the cache holds, recorded in each discover run's config as `features_format`. 2: a style trunk keeps its
# layout (edge-map) features in the content slot. 1 (runs without the key, made before 2026-12-02): the content slot
# held the pooled features for every trunk, so a style run's cache of format 1 cannot stand in for a new one.
# 3 (2026-12-04): a style trunk's statistics are followed by their mean over the image's crops.
FEATURES_FORMAT = 3


def _to_input(u8: np.ndarray, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = signed_from_u8(u8, device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def compute_features(
    trunk: torch.nn.Module,
    images: np.ndarray,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    batch_size: int = 256,
    progress: Callable[[int, int], None] | None = None,
    crops: MomentSum | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(content (VIEWS, N, Dc), style (VIEWS, N, Ds)) float32 of (N, S, S, 3) uint8 images; `crops`: a style
    trunk's single-crop statistics of the first view are added to it (the pass computes them anyway)."""
    n = len(images)
    channels_last = True  # the trunk's own format (Backbone.freeze): faster for depthwise convolutions
    trunk.to(device).eval()
    content = np.empty((VIEWS, n, trunk.content_dim), dtype=np.float32)
    style = np.empty((VIEWS, n, trunk.style_dim), dtype=np.float32)
    spans = row_spans(n, batch_size)
    for done, (start, stop) in enumerate(spans, 1):
        x = _to_input(images[start:stop], device, channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            # a style trunk's content slot (the heads' independence term reads it): one pass, kept for both views,
            # since what a picture shows does not change when it is mirrored
            layout = trunk.layout(x) if hasattr(trunk, "layout") else None
            for view, batch in enumerate((x, x.flip(-1))):
                if layout is None:
                    c, s = trunk(batch)
                else:
                    c, (s, per_crop) = layout, trunk.with_crops(batch)
                    if crops is not None and view == 0:
                        crops.add(per_crop.flatten(0, 1))
                content[view, start:stop] = c.float().cpu().numpy()
                style[view, start:stop] = s.float().cpu().numpy()
        if progress is not None:
            progress(stop, n) if done < len(spans) else progress(n, n)
    return content, style


class MomentSum:
    """Streamed float64 mean and covariance of rows added batch by batch (memory does not grow with their number)."""

    def __init__(self) -> None:
        self.shift: torch.Tensor | None = None
        self.total = self.square = None
        self.count = 0

    def add(self, rows: torch.Tensor) -> None:
        """Add the (B, D) rows."""
        rows = rows.double().cpu()
        if self.shift is None:  # sums about a first estimate of the mean keep float64 sums of squares exact enough
            self.shift = rows.mean(0)
            self.total = torch.zeros_like(self.shift)
            self.square = torch.zeros(len(self.shift), len(self.shift), dtype=torch.float64)
        rows = rows - self.shift
        self.total += rows.sum(0)
        self.square += rows.T @ rows
        self.count += len(rows)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean (D,), covariance (D, D)) float64 of the rows added."""
        mean = self.total / self.count
        cov = (self.square - self.count * torch.outer(mean, mean)) / max(self.count - 1, 1)
        return self.shift + mean, cov


@torch.no_grad()
def crop_moments(trunk: torch.nn.Module, images: np.ndarray, device: torch.device,
                 batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (D,), covariance (D, D)) float64 of `trunk.crop_statistics` over every crop of (N, S, S, 3) uint8
    `images` (`MomentSum`)."""
    trunk.to(device).eval()
    found = MomentSum()
    for start in range(0, len(images), batch):
        x = _to_input(images[start : start + batch], device, channels_last=True)
        found.add(trunk.crop_statistics(x).flatten(0, 1))
    return found.moments()


def _save(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def cached_features(run: Path, n: int, widths: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's stored features when both files exist and hold `n` images (of `widths` (content, style) columns,
    when given: a cache an older format wrote does not fit today's trunk)."""
    paths = run / CONTENT_NPY, run / STYLE_NPY
    if not all(p.is_file() for p in paths):
        return None
    content, style = (np.load(p, mmap_mode="r") for p in paths)
    if content.shape[:2] != (VIEWS, n) or style.shape[:2] != (VIEWS, n):
        return None
    if widths is not None and (content.shape[2], style.shape[2]) != widths:
        return None
    return np.asarray(content), np.asarray(style)


def run_features(run: Path, trunk: torch.nn.Module, images: np.ndarray, device: torch.device,
                 amp_dtype: torch.dtype | None, progress: Callable[[int, int], None] | None = None,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The run's features: read from the run folder, or computed and stored there (with a style trunk's crop
    moments, `cached_crop_moments`)."""
    found = cached_features(run, len(images), (trunk.content_dim, trunk.style_dim))
    if found is not None:
        return found
    crops = MomentSum() if hasattr(trunk, "with_crops") else None
    content, style = compute_features(trunk, images, device, amp_dtype, progress=progress, crops=crops)
    if crops is not None:  # before the features, whose presence marks the pass as done
        mean, cov = crops.moments()
        with atomic_path(run / CROP_MOMENTS_NPZ) as tmp:
            with open(tmp, "wb") as f:
                # float32 covariance: half the file (49 MB with the default trunk), and a relative error of 1e-7
                # is far below what whitening on its first few hundred principal axes resolves
                np.savez(f, mean=mean.numpy(), cov=cov.float().numpy(), images=len(images))
    _save(run / CONTENT_NPY, content)
    _save(run / STYLE_NPY, style)
    return content, style


def cached_crop_moments(run: Path, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The (mean, covariance) of a style trunk's single-crop statistics stored beside the run's features, when they
    were accumulated over its `n` images."""
    path = run / CROP_MOMENTS_NPZ
    if not path.is_file():
        return None
    with np.load(path) as stored:
        if int(stored["images"]) != n:
            return None
        return torch.from_numpy(stored["mean"]), torch.from_numpy(stored["cov"]).double()


def neighbours(desc: torch.Tensor, k: int, chunk: int = 4096) -> torch.Tensor:
    """Indices (N, k) of each row's k most cosine-similar other rows (exact; faiss when installed and N is large)."""
    n = desc.shape[0]
    k = max(1, min(k, n - 1))
    x = torch.nn.functional.normalize(desc.float(), dim=1)
    if n > 50_000:
        try:
            import faiss

            index = faiss.IndexFlatIP(x.shape[1])
            index.add(x.cpu().numpy())
            _, ids = index.search(x.cpu().numpy(), k + 1)
            return torch.from_numpy(ids[:, 1:]).long()
        except ImportError:
            pass
    out = torch.empty(n, k, dtype=torch.long)
    for start in range(0, n, chunk):
        sim = x[start : start + chunk] @ x.t()
        rows = torch.arange(start, min(start + chunk, n))
        sim[rows - start, rows] = -2.0  # not its own neighbour
        out[start : start + chunk] = sim.topk(k, dim=1).indices.cpu()
    return out
