"""A trunk for `--domains style`: what a frozen backbone and the pixels say about how an image is rendered.

Its style output holds three blocks side by side: the backbone's per-stage channel mean and standard deviation
(as `Backbone.forward` gives them), the Gram matrices (upper triangles) of its first `GRAM_STAGES` maps (the local
texture style-transfer methods match, Gatys et al. 2016) and the rendering statistics of the image itself
(models/backbones/rendering.py), followed by the mean of the same statistics over `len(CROP_OFFSETS)² - 1` crops of
the image (`crop_statistics`): the guiding network reads how those statistics agree between crops of one image, which
is the rendering, apart from where they vary with what each crop shows. Its content output is its `layout`: the
pooled features of the image's edge map, what it shows with little of how it is drawn (the heads' content-independence
term and the descriptor's content centring group images by it; on the style sets of bench/style_sets.py its groups
know the picture far better than the style, bench/RESULTS.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from i2icurate.models.backbones.base import Backbone, channel_statistics
from i2icurate.models.backbones.rendering import WIDTH as RENDERING_WIDTH
from i2icurate.models.backbones.rendering import edge_map, rendering_statistics

GRAM_STAGES = 4  # the stem and the first three stages: few channels, local appearance
# The crops: squares of CROP_SIDE of the image side, their corners on a grid of CROP_OFFSETS (shares of the side) in
# both axes with its centre left out, each resized back to the image's size. A grid that reaches the border
# ({0, 0.3, 0.6}) gave 0.606 on four typefaces against 0.886 for this one (bench/RESULTS.md, session 25): a crop of
# the empty margin says nothing about the face.
CROP_SIDE = 0.4
CROP_OFFSETS = (0.15, 0.3, 0.45)


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


def crop_boxes(size: int) -> list[tuple[int, int, int]]:
    """(top, left, side) in pixels of each crop of a `size` px square image (the grid's centre left out)."""
    side = max(1, round(CROP_SIDE * size))
    starts = [min(round(o * size), size - side) for o in CROP_OFFSETS]
    middle = len(starts) // 2
    return [(top, left, side) for i, top in enumerate(starts) for j, left in enumerate(starts)
            if (i, j) != (middle, middle)]


def image_crops(x: Tensor) -> list[Tensor]:
    """The crops of `crop_boxes` of a batch of square images, each resized (bilinear) to the images' size."""
    size = x.shape[-1]
    return [F.interpolate(x[..., top : top + side, left : left + side], size=(size, size), mode="bilinear",
                          align_corners=False) for top, left, side in crop_boxes(size)]


class StyleTrunk(nn.Module):
    """`forward(x)` gives (layout, [statistics | their mean over the image's crops]), where the statistics are
    [per-stage statistics | Gram statistics | rendering statistics] (`statistics_dim` columns)."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.stage_channels
        self.name, self.input_size, self.content_dim = backbone.name, backbone.input_size, backbone.content_dim
        self.stage_sizes = tuple(2 * c for c in channels)
        self.gram_sizes = tuple(c * (c + 1) // 2 for c in channels[:GRAM_STAGES])
        self.rendering_width = RENDERING_WIDTH
        self.statistics_dim = sum(self.stage_sizes) + sum(self.gram_sizes) + RENDERING_WIDTH
        self.style_dim = 2 * self.statistics_dim

    def _statistics(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(pooled final map, statistics (B, statistics_dim)) of images in [-1, 1]."""
        maps, final = self.backbone.maps(x)
        # the statistics in float32 even under bf16 autocast: a histogram bin or a Gram entry should not depend on it
        with torch.autocast(x.device.type, enabled=False):
            style = torch.cat([channel_statistics(maps), gram_statistics(maps[:GRAM_STAGES]),
                               rendering_statistics(x)], 1)
        return final.float().mean(dim=(2, 3)), style

    def crop_statistics(self, x: Tensor) -> Tensor:
        """(B, crops, statistics_dim): the statistics of each of `image_crops(x)`."""
        return torch.stack([self._statistics(crop)[1] for crop in image_crops(x)], 1)

    def with_crops(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """`forward`'s style and the `crop_statistics` it averages."""
        whole = self._statistics(x)[1]
        crops = self.crop_statistics(x)
        return torch.cat([whole, crops.mean(1)], 1), crops

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(layout (B, content_dim), style (B, style_dim)) of images in [-1, 1] at the size the run decoded."""
        return self.layout(x), self.with_crops(x)[0]

    def layout(self, x: Tensor) -> Tensor:
        """(B, content_dim) pooled backbone features of the edge maps of images in [-1, 1], the edges taken at the
        backbone's input size (a 32 px decode is upsampled first, as `Backbone.maps` would)."""
        _, final = self.backbone.maps(edge_map(self.backbone.at_input_size(x)))
        return final.float().mean(dim=(2, 3))
