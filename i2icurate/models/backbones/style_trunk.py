"""A trunk for `--domains style`: what a frozen backbone and the pixels say about how an image is rendered.

Its style output holds three blocks side by side: the backbone's per-stage channel mean and standard deviation
(as `Backbone.forward` gives them), the Gram matrices (upper triangles) of its first `GRAM_STAGES` maps (the local
texture style-transfer methods match, Gatys et al. 2016) and the rendering statistics of the image itself
(models/backbones/rendering.py). Its content output is the backbone's pooled features, as for `--domains content`.
`layout` is what the feature cache keeps in the content slot instead: the pooled features of the image's edge map,
what it shows with little of how it is drawn (the heads' content-independence term groups images by it; on the
style sets of bench/style_sets.py its groups know the picture far better than the style, bench/RESULTS.md).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from i2icurate.models.backbones.base import Backbone, channel_statistics
from i2icurate.models.backbones.rendering import WIDTH as RENDERING_WIDTH
from i2icurate.models.backbones.rendering import edge_map, rendering_statistics

GRAM_STAGES = 4  # the stem and the first three stages: few channels, local appearance


def gram_statistics(maps: list[Tensor]) -> Tensor:
    """(B, sum c(c+1)/2): the upper triangle of each map's channel covariance over positions, map by map."""
    parts = []
    for m in maps:
        f = m.float().flatten(2)
        f = f - f.mean(2, keepdim=True)
        gram = f @ f.transpose(1, 2) / f.shape[2]
        rows, cols = torch.triu_indices(gram.shape[1], gram.shape[1], device=gram.device)
        parts.append(gram[:, rows, cols])
    return torch.cat(parts, 1)


class StyleTrunk(nn.Module):
    """`forward(x)` gives (pooled content, [per-stage statistics | Gram statistics | rendering statistics])."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.stage_channels
        self.name, self.input_size, self.content_dim = backbone.name, backbone.input_size, backbone.content_dim
        self.stage_sizes = tuple(2 * c for c in channels)
        self.gram_sizes = tuple(c * (c + 1) // 2 for c in channels[:GRAM_STAGES])
        self.rendering_width = RENDERING_WIDTH
        self.style_dim = sum(self.stage_sizes) + sum(self.gram_sizes) + RENDERING_WIDTH

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(content (B, content_dim), style (B, style_dim)) of images in [-1, 1] at the size the run decoded."""
        maps, final = self.backbone.maps(x)
        # the statistics in float32 even under bf16 autocast: a histogram bin or a Gram entry should not depend on it
        with torch.autocast(x.device.type, enabled=False):
            style = torch.cat([channel_statistics(maps), gram_statistics(maps[:GRAM_STAGES]),
                               rendering_statistics(x)], 1)
        return final.float().mean(dim=(2, 3)), style

    def layout(self, x: Tensor) -> Tensor:
        """(B, content_dim) pooled backbone features of the edge maps of images in [-1, 1], the edges taken at the
        backbone's input size (a 32 px decode is upsampled first, as `Backbone.maps` would)."""
        _, final = self.backbone.maps(edge_map(self.backbone.at_input_size(x)))
        return final.float().mean(dim=(2, 3))
