"""Shared layers for the TUNIT networks: AdaIN, FRN and the residual blocks of G and D."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv_reflect(c_in: int, c_out: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A biased conv with reflect padding that keeps the size (or divides it by ``stride``)."""
    pad = (kernel - 1) // 2 if stride == 1 else 1
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, padding_mode="reflect")


class AdaIN(nn.Module):
    """Instance norm without its own affine; per-sample scale and shift are passed to ``forward``.

    ``params`` is B x 2C: the first C values are the bias (mean), the next C the weight (std).
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps

    @property
    def n_params(self) -> int:
        """Number of style-MLP outputs this layer consumes."""
        return 2 * self.num_features

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        bias, weight = params.to(x.dtype).split(self.num_features, dim=1)
        x = F.instance_norm(x, eps=self.eps)
        return x * weight[:, :, None, None] + bias[:, :, None, None]


class ResBlockIN(nn.Module):
    """Content-encoder residual block: conv3-IN-ReLU-conv3-IN, output ``x + 0.1 * residual``."""

    def __init__(self, dim: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_reflect(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(),
            conv_reflect(dim, dim, 3), nn.InstanceNorm2d(dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + 0.1 * self.body(x)


class ResBlockAdaIN(nn.Module):
    """Decoder residual block with AdaIN norms (conv3-AdaIN-ReLU-conv3-AdaIN), output ``x + 0.1 * residual``."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = conv_reflect(dim, dim, 3)
        self.norm1 = AdaIN(dim)
        self.conv2 = conv_reflect(dim, dim, 3)
        self.norm2 = AdaIN(dim)

    @property
    def n_params(self) -> int:
        """Number of style-MLP outputs this block consumes (both AdaIN layers, in order)."""
        return self.norm1.n_params + self.norm2.n_params

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        p1, p2 = params.split([self.norm1.n_params, self.norm2.n_params], dim=1)
        h = F.relu(self.norm1(self.conv1(x), p1))
        h = self.norm2(self.conv2(h), p2)
        return x + 0.1 * h


class UpBlockAdaIN(nn.Module):
    """Decoder up-sampling block: nearest x2, conv5 (reflect) to ``c_out``, AdaIN, ReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv_reflect(c_in, c_out, 5)
        self.norm = AdaIN(c_out)

    @property
    def n_params(self) -> int:
        """Number of style-MLP outputs this block consumes."""
        return self.norm.n_params

    def forward(self, x: Tensor, params: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.relu(self.norm(self.conv(x), params))


class FRN(nn.Module):
    """Filter response norm followed by a TLU: ``max(gamma * x / rms(x) + beta, tau)`` per channel."""

    def __init__(self, num_features: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, num_features, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.tau = nn.Parameter(torch.zeros(1, num_features, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        # The mean square is taken in float32: under bf16 autocast it would otherwise lose most of its bits.
        nu2 = x.float().pow(2).mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(nu2 + self.eps).to(x.dtype)
        return torch.maximum(self.gamma * x + self.beta, self.tau)


class ActFirstResBlk(nn.Module):
    """Pre-activation discriminator block: FRN-conv3-(avgpool)-FRN-conv3, plus a (1x1, pooled) shortcut.

    The first conv keeps ``c_in`` channels and the second maps to ``c_out``; output is ``(shortcut + res) / sqrt 2``.
    """

    def __init__(self, c_in: int, c_out: int, downsample: bool = False):
        super().__init__()
        self.downsample = downsample
        self.norm1 = FRN(c_in)
        self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1)
        self.norm2 = FRN(c_in)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        s = self.shortcut(x)
        h = self.conv1(self.norm1(x))
        if self.downsample:
            s = F.avg_pool2d(s, 2)
            h = F.avg_pool2d(h, 2)
        h = self.conv2(self.norm2(h))
        return (s + h) / math.sqrt(2.0)
