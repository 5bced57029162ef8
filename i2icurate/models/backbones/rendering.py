"""Low-level statistics of how an image is rendered, computed on the image itself (no network).

Eight families, each a short histogram or a few numbers per image: saturation, channel spread (max - min over
RGB), tone, palette (5-bit colours: how many, their entropy, the largest and four largest shares), gradient
magnitude and orientation (Sobel), ink stroke width (how many erosions each pixel of the minority tone survives,
and that tone's share) and MSCN contrast (the grey level minus its local mean over its local deviation, as in
BRISQUE). They tell a pencil sketch from a photograph, a bold face from a regular one, line-art from colour
drawings, where a network's pooled features see the same picture or letter (bench/RESULTS.md, "Style domains").
Batched torch, so the same code runs on the cached images of a run and at export, on CPU or GPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)
MSCN_SIGMA = 7 / 6  # BRISQUE's local window
MAX_DEPTH = 8  # stroke depths counted: 1..8 erosions
# the edge map's blur, in pixels: a pencil sketch's hatching and a photo's grain then leave the outlines alone (bench/
# RESULTS.md, session 19: the photo renderings' clusters 0.641 -> 0.786 over three seeds, typefaces-4 0.715 -> 0.679)
EDGE_SIGMA = 1.0
GRADIENT_TOP = math.log1p(20 * 5.7)  # log1p(20 |Sobel|) of a black-white step is about this

# (family, number of values), in the order of `rendering_statistics`' columns
FAMILIES: tuple[tuple[str, int], ...] = (
    ("saturation", 8), ("spread", 8), ("tone", 16), ("palette", 4), ("gradient", 10), ("orientation", 8),
    ("stroke", MAX_DEPTH + 1), ("mscn", 16),
)
WIDTH = sum(w for _, w in FAMILIES)


def histogram(values: Tensor, bins: int, low: float, high: float, weights: Tensor | None = None) -> Tensor:
    """(B, bins) normalised histograms of the rows of `values` (B, P) over [low, high]; values outside are left out,
    a row with nothing inside is all zeros."""
    inside = (values >= low) & (values <= high)
    index = ((values - low) / (high - low) * bins).floor().long().clamp(0, bins - 1)
    w = inside.to(values.dtype) if weights is None else weights * inside
    counts = values.new_zeros(values.shape[0], bins).scatter_add_(1, index, w)
    return counts / counts.sum(1, keepdim=True).clamp_min(1e-12)


def _unit(x: Tensor) -> Tensor:
    """Images in [-1, 1] as float32 in [0, 1]."""
    return ((x.float() + 1) / 2).clamp(0, 1)


def _grey(u: Tensor) -> Tensor:
    """(B, 1, H, W) luma of (B, 3, H, W) images in [0, 1]."""
    return (u * torch.tensor(LUMA, device=u.device).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _sobel(grey: Tensor) -> tuple[Tensor, Tensor]:
    """(d/dx, d/dy) of (B, 1, H, W) maps, edges replicated."""
    smooth = torch.tensor([1.0, 2.0, 1.0], device=grey.device)
    diff = torch.tensor([-1.0, 0.0, 1.0], device=grey.device)
    kx = (smooth[:, None] * diff[None, :])[None, None]
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kx), F.conv2d(padded, kx.transpose(2, 3))


def edge_map(x: Tensor) -> Tensor:
    """(B, 3, H, W) line drawings of (B, 3, H, W) images in [-1, 1]: the Sobel magnitude of the grey image blurred by
    EDGE_SIGMA, scaled to each image's strongest edge and inverted (dark lines on white, in [-1, 1]), repeated over the
    three channels."""
    gx, gy = _sobel(_gaussian_blur(_grey(_unit(x)), EDGE_SIGMA))
    magnitude = torch.sqrt(gx**2 + gy**2)
    magnitude = magnitude / magnitude.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    return (1 - 2 * magnitude).expand(-1, 3, -1, -1)


def _gaussian_blur(maps: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, 1, H, W) maps (radius 4 sigma, edges reflected)."""
    radius = int(4 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    pad = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    kernel = kernel[radius - pad : radius + pad + 1]
    kernel = kernel / kernel.sum()
    out = F.conv2d(F.pad(maps, (pad, pad, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"), kernel.view(1, 1, -1, 1))


def _stroke_depth(ink: Tensor) -> Tensor:
    """How many 4-neighbour erosions each pixel of the (B, 1, H, W) bool mask survives (0 off the mask; counted up
    to MAX_DEPTH + 1); outside the image counts as ink, as in a distance transform."""
    depth = torch.zeros_like(ink, dtype=torch.float32)
    current = ink.float()
    for _ in range(MAX_DEPTH + 1):
        depth += current
        padded = F.pad(current, (1, 1, 1, 1), value=1.0)
        cross = torch.stack([padded[..., 1:-1, :-2], padded[..., 1:-1, 2:], padded[..., :-2, 1:-1],
                             padded[..., 2:, 1:-1], current])
        current = cross.amin(0)
        if not bool(current.any()):
            break
    return depth


def _palette(u8: Tensor) -> Tensor:
    """(B, 4): log of the number of 5-bit colours, their entropy, the largest share and the four largest."""
    b = u8.shape[0]
    q = (u8 // 8).long()
    codes = q[:, 0] * 1024 + q[:, 1] * 32 + q[:, 2]
    offsets = torch.arange(b, device=u8.device)[:, None] * 32768
    counts = torch.bincount((codes.flatten(1) + offsets).flatten(), minlength=b * 32768).view(b, 32768).float()
    share = counts / counts.sum(1, keepdim=True)
    entropy = -(share * torch.log(share.clamp_min(1e-12))).sum(1)
    top = share.topk(4, dim=1).values
    return torch.stack([torch.log((counts > 0).sum(1).float()), entropy, top[:, 0], top.sum(1)], 1)


@torch.no_grad()
def rendering_statistics(x: Tensor) -> Tensor:
    """(B, WIDTH) rendering statistics of (B, 3, H, W) images in [-1, 1] (columns in the order of FAMILIES)."""
    u = _unit(x)
    b = u.shape[0]
    grey = _grey(u)
    top, bottom = u.amax(1), u.amin(1)
    saturation = torch.where(top > 0, (top - bottom) / top.clamp_min(1e-12), torch.zeros_like(top))
    gx, gy = _sobel(grey)
    magnitude = torch.hypot(gx, gy).flatten(1)
    orientation = torch.remainder(torch.atan2(gy, gx), math.pi).flatten(1)
    ink = grey < 0.5
    flip = ink.float().mean((1, 2, 3)) > 0.5  # the minority tone is the ink (dark on light or light on dark)
    ink = torch.where(flip.view(-1, 1, 1, 1), ~ink, ink)
    depth = _stroke_depth(ink).flatten(1)
    mean = _gaussian_blur(grey, MSCN_SIGMA)
    spread = (_gaussian_blur(grey * grey, MSCN_SIGMA) - mean * mean).abs().sqrt()
    mscn = ((grey - mean) / (spread + 1 / 255)).flatten(1)
    return torch.cat([
        histogram(saturation.flatten(1), 8, 0, 1),
        histogram((top - bottom).flatten(1), 8, 0, 1),
        histogram(grey.flatten(1), 16, 0, 1),
        _palette((u * 255).round()),
        histogram(torch.log1p(20 * magnitude), 10, 0, GRADIENT_TOP),
        histogram(orientation, 8, 0, math.pi, weights=magnitude),
        histogram(depth, MAX_DEPTH, 0.5, MAX_DEPTH + 0.5),
        ink.float().mean((1, 2, 3)).view(b, 1),
        histogram(mscn, 16, -3, 3),
    ], 1)
