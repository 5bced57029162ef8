"""U-GAT-IT networks: the ResNet generator with CAM attention and AdaILN, and the spectrally normalised discriminator.

Written from the paper and the spec of the PyTorch port (ch = 64, n_res = 4 give the reference parameter counts:
G light 10,589,888; G full 77,633,216 at 128 px and 278,959,808 at 256 px; D global 53,130,176, D local 3,290,560).

Kept as in the reference: the unbiased variance in AdaILN/ILN, ρ initialised to 0.9 (AdaILN) and 0 (ILN) and clamped
to [0, 1] by the trainer after each generator step (`ResnetGenerator.clip_rho`), PyTorch's default initialisation.

Deviations (our defaults):
- the CAM of the discriminator weights the feature map with the spectrally normalised weight of its `gap_fc` /
  `gmp_fc`, the weight that also produces the CAM logit, instead of the un-normalised `weight_orig`;
- spectral norm is a small wrapper (`SpectralNorm`) whose power iteration and σ are computed in float32 even under
  bf16 autocast (torch's parametrisation mixes dtypes there); one power iteration per forward call, as in torch;
- the global discriminator fails below ~128 px (its map shrinks to 1×1 and the reflection pad errors): `fit_layers`
  lowers the number of layers for small images so the output map is never smaller than 2×2 (7 layers at 128 px and
  above, 6 at 64 px, 5 at 32 px).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AdaILN(nn.Module):
    """Adaptive instance-layer norm: ρ·IN(x) + (1 − ρ)·LN(x), scaled and shifted by γ, β from the CAM features."""

    def __init__(self, channels: int, eps: float = 1e-5, rho_init: float = 0.9) -> None:
        super().__init__()
        self.eps = eps
        self.rho = nn.Parameter(torch.full((1, channels, 1, 1), rho_init))

    def mix(self, x: Tensor) -> Tensor:
        """The ρ-weighted mix of instance- and layer-normalised x, in float32 (unbiased variances, as the reference).

        The layer's mean and variance follow from the channels' (law of total variance), and both normalisations fold
        into one scale and shift per channel: equal to ρ·(x − μ_c)/σ_c + (1 − ρ)·(x − μ)/σ to float32 rounding, and
        several times faster on a CPU than computing the two apart with torch.var.
        """
        x = x.float()
        n = x.shape[2] * x.shape[3]
        mean_c = x.mean((2, 3), keepdim=True)
        var_c = (x - mean_c).square().mean((2, 3), keepdim=True)  # torch.var_mean is ~20x slower on a CPU
        mean = mean_c.mean(1, keepdim=True)
        var = (var_c + (mean_c - mean) ** 2).mean(1, keepdim=True)
        total = n * x.shape[1]
        inv_in = torch.rsqrt(var_c * (n / max(n - 1, 1)) + self.eps)
        inv_ln = torch.rsqrt(var * (total / max(total - 1, 1)) + self.eps)
        scale = self.rho * inv_in + (1 - self.rho) * inv_ln
        shift = self.rho * mean_c * inv_in + (1 - self.rho) * mean * inv_ln
        return x * scale - shift

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        """x: (B, C, H, W); gamma, beta: (B, C)."""
        return self.mix(x) * gamma[:, :, None, None].float() + beta[:, :, None, None].float()


class ILN(AdaILN):
    """Instance-layer norm with its own learnable γ (init 1) and β (init 0); ρ starts at 0 (pure layer norm)."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__(channels, eps, rho_init=0.0)
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """x: (B, C, H, W)."""
        return self.mix(x) * self.gamma + self.beta


def _conv3(channels_in: int, channels_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), nn.Conv2d(channels_in, channels_out, 3, stride, bias=False)]


class ResnetBlock(nn.Module):
    """Encoder residual block: two reflect-padded 3×3 convs with instance norm."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv3(channels, channels), nn.InstanceNorm2d(channels), nn.ReLU(True),
            *_conv3(channels, channels), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x + body(x)."""
        return x + self.body(x)


class ResnetAdaILNBlock(nn.Module):
    """Decoder residual block: two 3×3 convs normalised by AdaILN with the shared γ, β."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(*_conv3(channels, channels))
        self.norm1 = AdaILN(channels)
        self.conv2 = nn.Sequential(*_conv3(channels, channels))
        self.norm2 = AdaILN(channels)

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        """x: (B, C, H, W); gamma, beta: (B, C)."""
        out = F.relu(self.norm1(self.conv1(x), gamma, beta))
        return x + self.norm2(self.conv2(out), gamma, beta)


def _cam_inputs(x: Tensor, gap_weight: Tensor, gmp_weight: Tensor) -> tuple[Tensor, Tensor]:
    """Class activation map: the (B, 2) logits of the avg- and max-pooled features and the two re-weighted maps."""
    gap, gmp = x.mean((2, 3)), x.amax((2, 3))
    logits = torch.cat([F.linear(gap, gap_weight), F.linear(gmp, gmp_weight)], 1)
    weighted = torch.cat([x * gap_weight[0, :, None, None], x * gmp_weight[0, :, None, None]], 1)
    return logits, weighted


class ResnetGenerator(nn.Module):
    """U-GAT-IT generator; returns (image in [-1, 1], CAM logit (B, 2), heatmap (B, 1, S/4, S/4)).

    `light` computes γ, β from the globally pooled attention map; the full model flattens the whole (S/4)²·4ch map
    into its first FC layer, so its size depends on `img_size` (268 M weights at 256 px).
    """

    def __init__(self, img_size: int = 256, ch: int = 64, n_res: int = 4, light: bool = False) -> None:
        super().__init__()
        if img_size % 4:
            raise ValueError(f"img_size must be a multiple of 4, got {img_size}")
        self.light = light
        width = ch * 4
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(3, ch, 7, bias=False), nn.InstanceNorm2d(ch), nn.ReLU(True),
            *_conv3(ch, ch * 2, 2), nn.InstanceNorm2d(ch * 2), nn.ReLU(True),
            *_conv3(ch * 2, width, 2), nn.InstanceNorm2d(width), nn.ReLU(True),
            *(ResnetBlock(width) for _ in range(n_res)),
        )
        self.gap_fc = nn.Linear(width, 1, bias=False)
        self.gmp_fc = nn.Linear(width, 1, bias=False)
        self.conv1x1 = nn.Conv2d(width * 2, width, 1)
        fc_in = width if light else (img_size // 4) ** 2 * width
        self.fc = nn.Sequential(
            nn.Linear(fc_in, width, bias=False), nn.ReLU(True), nn.Linear(width, width, bias=False), nn.ReLU(True)
        )
        self.gamma = nn.Linear(width, width, bias=False)
        self.beta = nn.Linear(width, width, bias=False)
        self.blocks = nn.ModuleList(ResnetAdaILNBlock(width) for _ in range(n_res))
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), *_conv3(width, ch * 2), ILN(ch * 2), nn.ReLU(True),
            nn.Upsample(scale_factor=2, mode="nearest"), *_conv3(ch * 2, ch), ILN(ch), nn.ReLU(True),
            nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7, bias=False), nn.Tanh(),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: (B, 3, S, S) in [-1, 1]."""
        feat = self.encoder(x)
        cam_logit, weighted = _cam_inputs(feat, self.gap_fc.weight, self.gmp_fc.weight)
        feat = F.relu(self.conv1x1(weighted))
        heatmap = feat.sum(1, keepdim=True)
        code = self.fc(feat.mean((2, 3)) if self.light else feat.flatten(1))
        gamma, beta = self.gamma(code), self.beta(code)
        for block in self.blocks:
            feat = block(feat, gamma, beta)
        return self.decoder(feat), cam_logit, heatmap

    @torch.no_grad()
    def clip_rho(self) -> None:
        """Clamp every AdaILN/ILN ρ to [0, 1] (the reference's RhoClipper, applied after each generator step)."""
        for module in self.modules():
            if isinstance(module, AdaILN):
                module.rho.clamp_(0.0, 1.0)


class SpectralNorm(nn.Module):
    """A conv or linear layer whose weight is divided by its largest singular value (one power iteration a call)."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, eps: float = 1e-12, init_iters: int = 15) -> None:
        super().__init__()
        self.layer, self.eps = layer, eps
        rows, cols = layer.weight.shape[0], layer.weight[0].numel()
        self.register_buffer("u", F.normalize(torch.randn(rows), dim=0, eps=eps))
        self.register_buffer("v", F.normalize(torch.randn(cols), dim=0, eps=eps))
        for _ in range(init_iters):
            self._power_iteration(layer.weight.detach().flatten(1))

    @torch.no_grad()
    def _power_iteration(self, mat: Tensor) -> None:
        self.u.copy_(F.normalize(mat @ self.v, dim=0, eps=self.eps))
        self.v.copy_(F.normalize(mat.t() @ self.u, dim=0, eps=self.eps))

    def normalized_weight(self) -> Tensor:
        """The normalised weight; updates u, v in training mode. σ is computed in float32 even under autocast."""
        w = self.layer.weight
        with torch.autocast(w.device.type, enabled=False):
            mat = w.float().flatten(1)
            if self.training:
                self._power_iteration(mat.detach())
            # clones: a later call updates u, v in place while this call's graph still needs them
            sigma = torch.dot(self.u.clone(), mat @ self.v.clone())
            return w / sigma

    def forward(self, x: Tensor) -> Tensor:
        """The layer applied with the normalised weight."""
        w = self.normalized_weight()
        layer = self.layer
        if isinstance(layer, nn.Conv2d):  # padding is always an explicit ReflectionPad2d here
            return F.conv2d(x, w, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)
        return F.linear(x, w, layer.bias)


def fit_layers(n_layers: int, img_size: int) -> int:
    """The largest depth ≤ n_layers whose output map is at least 2×2 at img_size (the global D needs 128 px)."""
    for n in range(n_layers, 2, -1):
        size = img_size
        for _ in range(n - 2):  # stride-2 convs (reflect pad 1, 4×4): size // 2
            size //= 2
        if size - 2 >= 2:  # the stride-1 conv and the final conv each remove one pixel
            return n
    raise ValueError(f"img_size {img_size} is too small for the discriminator")


def _sn_conv4(channels_in: int, channels_out: int, stride: int, bias: bool = True) -> list[nn.Module]:
    return [nn.ReflectionPad2d(1), SpectralNorm(nn.Conv2d(channels_in, channels_out, 4, stride, bias=bias))]


class Discriminator(nn.Module):
    """PatchGAN discriminator with CAM; returns (patch logits, CAM logit (B, 2), heatmap).

    n_layers = 7 is the global D (70×70-plus receptive field, 2048 channels at ch 64), 5 the local one.
    """

    def __init__(self, n_layers: int, ch: int = 64) -> None:
        super().__init__()
        if n_layers < 3:
            raise ValueError(f"n_layers must be at least 3, got {n_layers}")
        layers: list[nn.Module] = [*_sn_conv4(3, ch, 2), nn.LeakyReLU(0.2, True)]
        width = ch
        for _ in range(n_layers - 3):
            layers += [*_sn_conv4(width, width * 2, 2), nn.LeakyReLU(0.2, True)]
            width *= 2
        layers += [*_sn_conv4(width, width * 2, 1), nn.LeakyReLU(0.2, True)]
        width *= 2
        self.body = nn.Sequential(*layers)
        self.gap_fc = SpectralNorm(nn.Linear(width, 1, bias=False))
        self.gmp_fc = SpectralNorm(nn.Linear(width, 1, bias=False))
        self.conv1x1 = nn.Conv2d(width * 2, width, 1)
        self.head = nn.Sequential(*_sn_conv4(width, 1, 1, bias=False))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: (B, 3, S, S) in [-1, 1]."""
        feat = self.body(x)
        cam_logit, weighted = _cam_inputs(feat, self.gap_fc.normalized_weight(), self.gmp_fc.normalized_weight())
        feat = F.leaky_relu(self.conv1x1(weighted), 0.2)
        heatmap = feat.sum(1, keepdim=True)
        return self.head(feat), cam_logit, heatmap
