"""Batched, per-sample augmentation on the training device.

TUNIT's positive pair is x (a flipped-or-not copy) and x+ (random affine, resized crop, colour jitter, flip). The
reference applies torchvision transforms image by image in loader workers; here the same families of transforms are
applied to a whole uint8 batch on the GPU with a different random draw per sample. torchvision's batched transforms
draw one set of parameters per call, so the per-sample affine (one `affine_grid`/`grid_sample`) and colour jitter
(closed-form blends, hue as a rotation in YIQ space) are written here by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AugmentSpec:
    """Ranges of the x+ view (TUNIT's defaults)."""

    degrees: float = 20.0
    translate: float = 0.1
    shear: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    ratio: tuple[float, float] = (0.9, 1.1)
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.125


def _uniform(gen: torch.Generator, n: int, low: float, high: float, device: torch.device) -> Tensor:
    return torch.rand(n, generator=gen, device=device) * (high - low) + low


def to_unit(images_u8: Tensor) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]."""
    return images_u8.permute(0, 3, 1, 2).float().div_(255.0)


def to_signed(images: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1], the range every network sees."""
    return images * 2.0 - 1.0


def resize_square(x: Tensor, size: int) -> Tensor:
    """(B, C, H, W) images resized to (size, size), bilinear and antialiased; unchanged when already that size."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def signed_from_u8(images_u8: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """(B, H, W, 3) uint8 array -> (B, 3, H, W) float in [-1, 1] on `device`, the input every network takes."""
    # np.array copies: a cache is a read-only memmap and torch wants writable memory
    return torch.from_numpy(np.array(images_u8)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


def from_signed_u8(images: Tensor) -> Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8, for saving pictures."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def random_flip(images: Tensor, gen: torch.Generator) -> Tensor:
    """Flip each image horizontally with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=gen, device=images.device) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


def random_affine(images: Tensor, gen: torch.Generator, spec: AugmentSpec) -> Tensor:
    """Per-sample rotation, translation, shear, scale/aspect (the resized crop) and horizontal flip."""
    b, device = images.shape[0], images.device
    angle = torch.deg2rad(_uniform(gen, b, -spec.degrees, spec.degrees, device))
    shear = torch.deg2rad(_uniform(gen, b, -spec.shear, spec.shear, device))
    tx = _uniform(gen, b, -spec.translate, spec.translate, device) * 2  # normalised coordinates span 2
    ty = _uniform(gen, b, -spec.translate, spec.translate, device) * 2
    scale = _uniform(gen, b, *spec.scale, device)
    log_ratio = _uniform(gen, b, math.log(spec.ratio[0]), math.log(spec.ratio[1]), device)
    sx, sy = scale * torch.exp(log_ratio / 2), scale * torch.exp(-log_ratio / 2)
    flip = torch.where(torch.rand(b, generator=gen, device=device) < 0.5, -1.0, 1.0)

    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # Forward map (output = A @ input): rotate, then shear along x, then scale (with flip), then translate.
    a11, a12 = cos + tan * sin, -sin + tan * cos
    a21, a22 = sin, cos
    forward = torch.zeros(b, 3, 3, device=device)
    forward[:, 0, 0], forward[:, 0, 1] = a11 * sx * flip, a12 * sx * flip
    forward[:, 1, 0], forward[:, 1, 1] = a21 * sy, a22 * sy
    forward[:, 0, 2], forward[:, 1, 2], forward[:, 2, 2] = tx, ty, 1.0
    theta = torch.linalg.inv(forward)[:, :2, :]  # grid_sample wants output -> input
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


_GREY = (0.299, 0.587, 0.114)


def _grey(images: Tensor) -> Tensor:
    r, g, b = images.unbind(1)
    return (_GREY[0] * r + _GREY[1] * g + _GREY[2] * b).unsqueeze(1)


def _rotate_hue(images: Tensor, turns: Tensor) -> Tensor:
    """Rotate the chroma of RGB images by `turns` of a full circle in YIQ space."""
    rgb_to_yiq = images.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    yiq_to_rgb = torch.linalg.inv(rgb_to_yiq)
    cos, sin = torch.cos(2 * math.pi * turns), torch.sin(2 * math.pi * turns)
    rot = torch.zeros(images.shape[0], 3, 3, device=images.device, dtype=images.dtype)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    matrix = yiq_to_rgb @ rot @ rgb_to_yiq  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, images)


def colour_jitter(images: Tensor, gen: torch.Generator, spec: AugmentSpec) -> Tensor:
    """Per-sample brightness, contrast, saturation and hue jitter of [0, 1] RGB images."""
    b, device = images.shape[0], images.device

    def factor(amount: float) -> Tensor:
        return _uniform(gen, b, max(0.0, 1 - amount), 1 + amount, device)[:, None, None, None]

    out = (images * factor(spec.brightness)).clamp(0, 1)
    mean = _grey(out).mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * factor(spec.contrast) + mean).clamp(0, 1)
    grey = _grey(out)
    out = ((out - grey) * factor(spec.saturation) + grey).clamp(0, 1)
    if spec.hue > 0:
        out = _rotate_hue(out, _uniform(gen, b, -spec.hue, spec.hue, device)).clamp(0, 1)
    return out


def positive_pair(images_u8: Tensor, gen: torch.Generator, spec: AugmentSpec | None = None) -> tuple[Tensor, Tensor]:
    """The (x, x+) views of a uint8 batch (B, H, W, 3), both (B, 3, H, W) in [-1, 1]."""
    spec = spec or AugmentSpec()
    unit = to_unit(images_u8)
    x = random_flip(unit, gen)
    x_aug = colour_jitter(random_affine(unit, gen, spec), gen, spec)
    return to_signed(x), to_signed(x_aug)


def flip_and_crop(images_u8: Tensor, gen: torch.Generator, jitter: float = 30 / 256) -> Tensor:
    """Unpaired-translation augmentation of a uint8 batch: random flip, then enlarge by up to `jitter` and crop back.

    The per-sample equivalent of the reference Resize(S + 30) + RandomCrop(S) + RandomHorizontalFlip; returns
    (B, 3, S, S) in [-1, 1].
    """
    unit = random_flip(to_unit(images_u8), gen)
    if jitter <= 0:
        return to_signed(unit)
    b, device = unit.shape[0], unit.device
    zoom = 1.0 + jitter  # the enlarged image is cropped back to S: a window of S / (S * zoom) in the sampled frame
    shift = (zoom - 1.0) / zoom
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / zoom
    theta[:, 0, 2] = _uniform(gen, b, -shift, shift, device)
    theta[:, 1, 2] = _uniform(gen, b, -shift, shift, device)
    grid = F.affine_grid(theta, list(unit.shape), align_corners=False)
    return to_signed(F.grid_sample(unit, grid, mode="bilinear", padding_mode="border", align_corners=False))


def random_crops(images: Tensor, size: int, gen: torch.Generator) -> Tensor:
    """A random `size` x `size` window of each image of a (B, C, H, W) batch, its position drawn per sample."""
    b, _, h, w = images.shape
    if size >= h and size >= w:
        return images
    tops = torch.randint(h - size + 1, (b,), generator=gen, device=gen.device).tolist()
    lefts = torch.randint(w - size + 1, (b,), generator=gen, device=gen.device).tolist()
    return torch.stack([img[:, t:t + size, s:s + size] for img, t, s in zip(images, tops, lefts, strict=True)])


def diff_augment(images: Tensor, gen: torch.Generator, translation: float = 0.125, cutout: float = 0.5) -> Tensor:
    """DiffAugment's translation and cutout (Zhao et al., NeurIPS 2020) of a (B, C, H, W) batch, differentiable.

    Every image is shifted by up to `translation` of its side (zero fill) and has a square of `cutout` of its side
    zeroed at a random centre, each draw per sample. A discriminator that sees real and generated images only
    through the same random transforms cannot memorise a small training set; the generator's gradient passes
    through the transforms. Written here because the two transforms are a dozen lines and kornia, which has them
    among many others, is not a dependency.
    """
    b, _, h, w = images.shape
    device = images.device
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    keep = torch.ones(b, h, w, dtype=torch.bool, device=device)
    if translation > 0:
        reach_y, reach_x = int(h * translation + 0.5), int(w * translation + 0.5)
        dy = torch.randint(-reach_y, reach_y + 1, (b, 1, 1), generator=gen, device=device)
        dx = torch.randint(-reach_x, reach_x + 1, (b, 1, 1), generator=gen, device=device)
        src_y, src_x = rows + dy, cols + dx
        keep &= (src_y >= 0) & (src_y < h) & (src_x >= 0) & (src_x < w)
        index = (src_y.clamp(0, h - 1) * w + src_x.clamp(0, w - 1)).flatten(1)  # (B, H*W)
        images = images.flatten(2).gather(2, index[:, None].expand(-1, images.shape[1], -1)).view_as(images)
    if cutout > 0:
        half_y, half_x = int(h * cutout + 0.5) / 2, int(w * cutout + 0.5) / 2
        cy = torch.randint(0, h, (b, 1, 1), generator=gen, device=device)
        cx = torch.randint(0, w, (b, 1, 1), generator=gen, device=device)
        keep &= ~(((rows - cy).abs() < half_y) & ((cols - cx).abs() < half_x))
    return images * keep[:, None].to(images.dtype)
