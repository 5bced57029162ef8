"""TUNIT guiding network E: a VGG-11-BN trunk with a pseudo-domain head and a style head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

# VGG-11 channel plan at the reference width 64; "M" is a 2x2 max-pool.
VGG11_PLAN: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _vgg_trunk(width: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    c_in = 3
    for item in VGG11_PLAN:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        c_out = max(1, int(item) * width // 64)
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        c_in = c_out
    return nn.Sequential(*layers), c_in


class GuidingNetwork(nn.Module):
    """Guiding network E: VGG-11-BN trunk, global average pool, heads ``disc`` (k logits) and ``cont`` (style).

    Both heads share one pass of the trunk. The style code is not normalised.
    """

    def __init__(self, k: int, style_dim: int = 128, width: int = 64):
        super().__init__()
        self.k = k
        self.style_dim = style_dim
        self.trunk, self.feat_dim = _vgg_trunk(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.disc = nn.Linear(self.feat_dim, k)
        self.cont = nn.Linear(self.feat_dim, style_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Convs kaiming-normal (fan_out, relu); BN weight 1 bias 0; linear N(0, 0.01); all biases 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def features(self, x: Tensor) -> Tensor:
        """Globally pooled trunk features (B x feat_dim)."""
        return self.pool(self.trunk(x)).flatten(1)

    def forward(self, x: Tensor, grad_logits: bool = True) -> tuple[Tensor, Tensor]:
        """Return (pseudo-domain logits B x k, style code B x style_dim).

        ``grad_logits=False`` computes the logits without a graph (pseudo-labels only): a backward pass from the
        style code then leaves the class head untouched, which DistributedDataParallel must know at forward time.
        """
        f = self.features(x)
        if grad_logits:
            return self.disc(f), self.cont(f)
        with torch.no_grad():
            logits = self.disc(f)
        return logits, self.cont(f)
