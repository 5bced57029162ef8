"""TUNIT generator (FUNIT-style): content encoder, AdaIN decoder, and the style MLP that drives the AdaIN layers."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from i2icurate.models.tunit.blocks import ResBlockAdaIN, ResBlockIN, UpBlockAdaIN, conv_reflect


def _n_down(img_size: int) -> int:
    n = math.log2(img_size / 16) if img_size >= 16 else -1.0
    if n < 0 or n != int(n):
        raise ValueError(f"img_size must be 16 * 2**n (got {img_size})")
    return int(n)


class ContentEncoder(nn.Module):
    """conv7-IN-ReLU, ``n_down`` x (conv4 stride 2, IN, ReLU) doubling channels, then ``n_res`` IN residual blocks."""

    def __init__(self, width: int, n_down: int, n_res: int):
        super().__init__()
        layers: list[nn.Module] = [conv_reflect(3, width, 7), nn.InstanceNorm2d(width), nn.ReLU()]
        dim = width
        for _ in range(n_down):
            layers += [conv_reflect(dim, 2 * dim, 4, stride=2), nn.InstanceNorm2d(2 * dim), nn.ReLU()]
            dim *= 2
        layers += [ResBlockIN(dim) for _ in range(n_res)]
        self.model = nn.Sequential(*layers)
        self.out_dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """``n_res`` AdaIN residual blocks, ``n_down`` AdaIN up-blocks halving channels, conv7 to RGB and tanh.

    AdaIN parameters are passed in as one B x ``n_adain`` tensor and sliced per layer in module order.
    """

    def __init__(self, dim: int, n_up: int, n_res: int):
        super().__init__()
        blocks: list[nn.Module] = [ResBlockAdaIN(dim) for _ in range(n_res)]
        for _ in range(n_up):
            blocks.append(UpBlockAdaIN(dim, dim // 2))
            dim //= 2
        self.blocks = nn.ModuleList(blocks)
        self.to_rgb = conv_reflect(dim, 3, 7)
        self.param_sizes = [b.n_params for b in blocks]
        self.n_adain = sum(self.param_sizes)

    def forward(self, content: Tensor, adain_params: Tensor) -> Tensor:
        x = content
        for block, params in zip(self.blocks, adain_params.split(self.param_sizes, dim=1), strict=True):
            x = block(x, params)
        return torch.tanh(self.to_rgb(x))


class Generator(nn.Module):
    """TUNIT generator: ``G(x, s) = Dec(Enc(x), MLP(s))``; the content code is always 16 x 16 spatially.

    ``width`` 0 picks 64 below 256 px and 32 otherwise; every down-sampling doubles the channels.
    """

    def __init__(self, img_size: int, style_dim: int = 128, width: int = 0, mlp_width: int = 256, n_res: int = 2):
        super().__init__()
        if width <= 0:
            width = 64 if img_size < 256 else 32
        n_down = _n_down(img_size)
        self.img_size = img_size
        self.style_dim = style_dim
        self.encoder = ContentEncoder(width, n_down, n_res)
        self.decoder = Decoder(self.encoder.out_dim, n_down, n_res)
        self.n_adain: int = self.decoder.n_adain
        self.mlp = nn.Sequential(
            nn.Linear(style_dim, mlp_width), nn.ReLU(),
            nn.Linear(mlp_width, mlp_width), nn.ReLU(),
            nn.Linear(mlp_width, self.n_adain),
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-normal (fan_in) weights on every conv and linear layer, zero biases."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def encode(self, x: Tensor) -> Tensor:
        """Content code of images ``x`` (B x C x 16 x 16)."""
        return self.encoder(x)

    def decode(self, content: Tensor, style: Tensor) -> Tensor:
        """Image in [-1, 1] from a content code and a style code (B x style_dim)."""
        return self.decoder(content, self.mlp(style))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """``Dec(Enc(x), MLP(style))``. ``style`` may hold n codes per image (n·B rows, code j for image j mod B):
        the content is encoded once and reused, and the n·B outputs come back in the same order."""
        content = self.encode(x)
        repeats, rest = divmod(style.shape[0], content.shape[0])
        if rest or not repeats:
            raise ValueError(f"{style.shape[0]} style codes for {content.shape[0]} images: need a multiple")
        if repeats > 1:
            content = content.repeat(repeats, 1, 1, 1)
        return self.decode(content, style)
