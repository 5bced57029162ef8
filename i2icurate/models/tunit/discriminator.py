"""TUNIT discriminator: a StarGAN-v2-style multi-task D with one output per pseudo-domain."""

from __future__ import annotations

import math

from torch import Tensor, nn

from i2icurate.models.tunit.blocks import ActFirstResBlk


class Discriminator(nn.Module):
    """Multi-task discriminator; ``forward(x, y)`` returns the logit of domain ``y[b]`` for each sample ``b``.

    conv3 to ``width`` (0 = 64 below 256 px, else 32), then ``log2(img_size) - 2`` stages of two pre-activation FRN
    residual blocks (the second doubles channels up to ``max_width`` and halves the size), then a 4 x 4 valid conv
    head and a 1 x 1 conv to ``k`` outputs.
    """

    def __init__(self, img_size: int, k: int, width: int = 0, max_width: int = 1024):
        super().__init__()
        n_stages = math.log2(img_size) - 2
        if n_stages < 1 or n_stages != int(n_stages):
            raise ValueError(f"img_size must be a power of two >= 8 (got {img_size})")
        if width <= 0:
            width = 64 if img_size < 256 else 32
        self.k = k
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1)]
        dim = width
        for _ in range(int(n_stages)):
            nxt = min(2 * dim, max_width)
            layers += [ActFirstResBlk(dim, dim), ActFirstResBlk(dim, nxt, downsample=True)]
            dim = nxt
        layers += [nn.LeakyReLU(0.2), nn.Conv2d(dim, dim, 4), nn.LeakyReLU(0.2), nn.Conv2d(dim, k, 1)]
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_in, relu) conv weights, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Logits of shape (B,): ``out[b, y[b]]``."""
        out = self.main(x).flatten(1)
        return out.gather(1, y.long().view(-1, 1)).squeeze(1)
