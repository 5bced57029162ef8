"""The rendering statistics `--domains style` reads: what each family sees on real images and drawn glyphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFont, ImageOps

from i2icurate.data.scan import scan_folder
from i2icurate.models.backbones.rendering import FAMILIES, WIDTH, histogram, rendering_statistics
from tests.conftest import load_bench

pytestmark = pytest.mark.usefixtures("one_thread")
style_sets = load_bench("style_sets.py")


def _tensor(images: list[Image.Image], size: int = 32) -> torch.Tensor:
    arrays = [np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _family(stats: torch.Tensor, name: str) -> torch.Tensor:
    start = 0
    for family, width in FAMILIES:
        if family == name:
            return stats[:, start : start + width]
        start += width
    raise KeyError(name)


def _animals(folder, n: int = 12) -> list[Image.Image]:
    return [Image.open(folder / f).convert("RGB") for f in scan_folder(folder).files[::17][:n]]


def test_histograms_are_distributions_and_mirroring_changes_only_orientation(animal_folder):
    x = _tensor(_animals(animal_folder))
    stats = rendering_statistics(x)
    assert stats.shape == (len(x), WIDTH) and torch.isfinite(stats).all()
    for name in ("saturation", "spread", "tone", "gradient", "orientation", "mscn"):
        assert torch.allclose(_family(stats, name).sum(1), torch.ones(len(x)), atol=1e-5), name
    mirrored = rendering_statistics(x.flip(-1))
    for name, _ in FAMILIES:
        same = torch.allclose(_family(stats, name), _family(mirrored, name), atol=1e-5)
        assert same == (name != "orientation"), name  # a mirror turns strokes, nothing else


def test_colour_shows_in_saturation_and_palette_not_in_a_grey_copy(animal_folder):
    grey = _animals(animal_folder)
    colour = [ImageOps.colorize(im.convert("L"), black="#1b3a8c", white="#f2c14e") for im in grey]
    g, c = rendering_statistics(_tensor(grey)), rendering_statistics(_tensor(colour))
    assert torch.allclose(_family(g, "saturation")[:, 0], torch.ones(len(grey)))  # all grey: the first bin
    assert (_family(c, "saturation")[:, 0] < 0.5).all()
    assert (_family(c, "palette")[:, 0] >= _family(g, "palette")[:, 0]).all()  # at least as many colours


def test_a_bold_face_has_deeper_strokes_than_a_regular_one():
    fonts = style_sets._font_dir()
    regular = ImageFont.truetype(str(fonts / "DejaVuSans.ttf"), 48)
    bold = ImageFont.truetype(str(fonts / "DejaVuSans-Bold.ttf"), 48)
    letters = "aegkmoswHKRZ"
    thin = rendering_statistics(_tensor([style_sets.draw_glyph(c, regular, 64) for c in letters], 64))
    thick = rendering_statistics(_tensor([style_sets.draw_glyph(c, bold, 64) for c in letters], 64))
    depth = torch.arange(1, 9, dtype=torch.float32)
    mean_depth = [(_family(s, "stroke")[:, :8] * depth).sum(1) for s in (thin, thick)]
    assert (mean_depth[1] > mean_depth[0]).all()
    assert (_family(thick, "stroke")[:, 8] > _family(thin, "stroke")[:, 8]).all()  # more ink


def test_histogram_leaves_out_values_outside_its_range():
    values = torch.tensor([[0.0, 0.49, 0.5, 1.0, 1.5, -0.1]])
    assert histogram(values, 2, 0, 1).tolist() == [[0.5, 0.5]]
    assert histogram(torch.tensor([[2.0, 3.0]]), 4, 0, 1).tolist() == [[0.0, 0.0, 0.0, 0.0]]
