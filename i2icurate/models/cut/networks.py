"""CUT networks: the anti-aliased ResNet generator, the 70x70 PatchGAN discriminator and the PatchSampleF head.

The generator is one indexed `nn.Sequential` (module indices as in the reference, e.g. 0 = reflect pad, 4 = first
down-conv, 12.. = residual blocks), so PatchNCE taps are "the output of module i" and SRUNIT's partial passes are
slices of that sequence. Attribute and buffer names follow the reference (`model.<i>`, `conv_block`, `filt`,
`mlp_<i>`), so reference CUT checkpoints load with `load_state_dict`.

PatchSampleF builds its MLPs eagerly from the known tap channels (the reference creates them lazily on the first
forward pass), so the optimiser and checkpoints see every parameter from the start.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

INIT_GAIN = 0.02
N_DOWN = 2  # two (anti-aliased) downsamplings and upsamplings: the encoder works at 1/4 resolution


def init_weights(module: nn.Module, gain: float = INIT_GAIN) -> None:
    """xavier_normal with `gain` for every conv and linear weight, zero biases (the reference `init_type xavier`)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear | nn.ConvTranspose2d):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _binomial(taps: Sequence[float]) -> Tensor:
    row = torch.tensor(taps, dtype=torch.float32)
    return row[:, None] * row[None, :]


class Downsample(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect pad 1, then a depthwise [1,2,1]x[1,2,1]/16 blur at stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        filt = _binomial([1.0, 2.0, 1.0])
        self.register_buffer("filt", (filt / filt.sum())[None, None].repeat(channels, 1, 1, 1))
        self.pad = nn.ReflectionPad2d(1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, ceil(H / 2), ceil(W / 2))."""
        return F.conv2d(self.pad(x), self.filt.to(x.dtype), stride=2, groups=x.shape[1])


class Upsample(nn.Module):
    """Anti-aliased 2x upsampling: replicate pad 1, depthwise transposed conv with [1,3,3,1]^2 (sum 4), crop to 2x."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        filt = _binomial([1.0, 3.0, 3.0, 1.0])
        self.register_buffer("filt", (filt / filt.sum() * 4)[None, None].repeat(channels, 1, 1, 1))
        self.pad = nn.ReplicationPad2d(1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, 2H, 2W)."""
        out = F.conv_transpose2d(self.pad(x), self.filt.to(x.dtype), stride=2, padding=2, groups=x.shape[1])
        return out[:, :, 1:-1, 1:-1]  # 2H + 2 -> 2H, the same window as the reference's two one-sided crops


class ResnetBlock(nn.Module):
    """x + (reflect pad, conv3, IN, ReLU, reflect pad, conv3, IN)(x)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Same shape in and out."""
        return x + self.conv_block(x)


class Generator(nn.Module):
    """CUT's `resnet_<n>blocks` generator (anti-aliased, IN without affine, no dropout) as one indexed sequence.

    Indices for n_blocks = 9: 0 pad, 1-3 conv7/IN/ReLU, 4-7 conv/IN/ReLU/down, 8-11 conv/IN/ReLU/down,
    12-20 residual blocks, 21-24 up/conv/IN/ReLU, 25-28 up/conv/IN/ReLU, 29 pad, 30 conv7, 31 tanh.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), nn.InstanceNorm2d(ngf),
                                   nn.ReLU(True)]
        ch = ngf
        for _ in range(N_DOWN):
            layers += [nn.Conv2d(ch, 2 * ch, 3, padding=1), nn.InstanceNorm2d(2 * ch), nn.ReLU(True),
                       Downsample(2 * ch)]
            ch *= 2
        layers += [ResnetBlock(ch) for _ in range(n_blocks)]
        for _ in range(N_DOWN):
            layers += [Upsample(ch), nn.Conv2d(ch, ch // 2, 3, padding=1), nn.InstanceNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_ch, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.in_ch, self.n_blocks = in_ch, n_blocks
        init_weights(self)

    @property
    def last_encoder_index(self) -> int:
        """Index of the last residual block: taps must be at or before it."""
        return 4 + 4 * N_DOWN + self.n_blocks - 1

    def tap_channels(self, layers: Sequence[int]) -> list[int]:
        """Channels of the output of each module index in `layers`."""
        channels, ch = [], self.in_ch
        for module in self.model:
            if isinstance(module, nn.Conv2d):
                ch = module.out_channels
            channels.append(ch)
        return [channels[i] for i in layers]

    def run(self, x: Tensor, start: int = 0, stop: int | None = None,
            taps: Sequence[int] = ()) -> tuple[Tensor, list[Tensor]]:
        """Apply modules `start` .. `stop - 1` (to the end by default); also return the outputs at indices `taps`."""
        stop = len(self.model) if stop is None else stop
        feats = []
        for i in range(start, stop):
            x = self.model[i](x)
            if i in taps:
                feats.append(x)
        return x, feats

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] (H, W multiples of 4) -> the translation, same shape, in [-1, 1]."""
        return self.model(x)

    def forward_taps(self, x: Tensor, layers: Sequence[int]) -> tuple[Tensor, list[Tensor]]:
        """The translation and the encoder taps at module indices `layers` from one pass."""
        return self.run(x, taps=layers)

    def encode(self, x: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """The taps at `layers`, stopping after the last one (the reference's encode_only)."""
        return self.run(x, stop=max(layers) + 1, taps=layers)[1]

    def decode_from(self, feat: Tensor, layer: int) -> Tensor:
        """The rest of the generator applied to `feat`, the output of module `layer`."""
        return self.run(feat, start=layer + 1)[0]


class Discriminator(nn.Module):
    """70x70 PatchGAN, anti-aliased: conv4 stride 1 + blur-downsample per level, IN, LeakyReLU 0.2; 30x30 at 256 px."""

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_ch, ndf, 4, padding=1), nn.LeakyReLU(0.2, True), Downsample(ndf)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1), nn.InstanceNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True), Downsample(ndf * mult)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1), nn.InstanceNorm2d(ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, padding=1)]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, 1, h, w) patch logits."""
        return self.model(x)


def l2_normalize(x: Tensor, eps: float = 1e-7) -> Tensor:
    """x / (||x||_2 + eps) along dim 1 (CUT's `Normalize`)."""
    return x / (x.pow(2).sum(1, keepdim=True).sqrt() + eps)


def sample_patch_ids(n_positions: int, num_patches: int, gen: torch.Generator, device: torch.device) -> Tensor:
    """`num_patches` distinct flat positions (all of them if fewer), drawn on `device`; shared across the batch."""
    return torch.randperm(n_positions, generator=gen, device=device)[:num_patches]


def gather_patches(feat: Tensor, ids: Tensor) -> Tensor:
    """(B, C, H, W) at flat positions `ids` (S,) -> (B * S, C), image-major like the reference."""
    b, c = feat.shape[:2]
    return feat.flatten(2).index_select(2, ids).transpose(1, 2).reshape(b * len(ids), c)


class PatchSampleF(nn.Module):
    """H: per tap, a 2-layer MLP (C -> nc -> nc, ReLU) on sampled positions, then L2 normalisation (in float32)."""

    def __init__(self, in_channels: Sequence[int], nc: int = 256) -> None:
        super().__init__()
        self.n_layers = len(in_channels)
        for i, c in enumerate(in_channels):
            setattr(self, f"mlp_{i}", nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)))
        init_weights(self)

    def mlp(self, index: int) -> nn.Module:
        """The MLP of tap number `index` (an index into the tap list, not a generator module index)."""
        return getattr(self, f"mlp_{index}")

    def project(self, index: int, feat: Tensor, ids: Tensor, frozen: bool = False) -> Tensor:
        """Embed `feat` (B, C, H, W) at positions `ids` through MLP `index`: (B * S, nc), unit rows, float32.

        `frozen` uses detached weights, so no gradient reaches this head (safe under autocast's weight-cast cache).
        """
        x = gather_patches(feat, ids)
        mlp = self.mlp(index)
        if frozen:
            params = {name: p.detach() for name, p in mlp.named_parameters()}
            x = torch.func.functional_call(mlp, params, (x,))
        else:
            x = mlp(x)
        return l2_normalize(x.float())

    def forward(self, feats: Sequence[Tensor], ids: Sequence[Tensor]) -> list[Tensor]:
        """Embed every tap at its own positions."""
        return [self.project(i, f, p) for i, (f, p) in enumerate(zip(feats, ids, strict=True))]
