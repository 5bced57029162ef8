"""PNG exports (scatter, contact sheets, cluster sheets, translation grid), UMAP layout and the summary tables."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from i2icurate.data.demo import load_animal_mnist, load_mnist_5k
from i2icurate.export.summary import cluster_summary, print_summary
from i2icurate.export.visuals import (
    PALETTE,
    cluster_color,
    cluster_sheets,
    contact_sheet,
    scatter_png,
    translation_grid,
    umap_2d,
)


@pytest.fixture(scope="module")
def animals() -> tuple[np.ndarray, np.ndarray]:
    """300 real animal silhouettes as RGB (N, 28, 28, 3) uint8, 30 per class, with labels."""
    images, labels, _ = load_animal_mnist()
    keep = np.concatenate([np.flatnonzero(labels == c)[:30] for c in range(10)])
    return np.repeat(images[keep][..., None], 3, axis=-1), labels[keep]


def _open(path) -> Image.Image:
    image = Image.open(path)
    image.load()  # forces a full decode, so a truncated file fails here
    assert image.format == "PNG"
    return image


def test_palette_is_distinct_and_cycles():
    assert len(PALETTE) >= 20 and len(set(PALETTE)) == len(PALETTE)
    assert cluster_color(len(PALETTE) + 3) == cluster_color(3)


def test_umap_2d_on_real_images(animals):
    images, _ = animals
    points = umap_2d(images[..., 0].reshape(len(images), -1) / 255.0, seed=0)
    assert points.shape == (300, 2) and points.dtype == np.float32 and np.isfinite(points).all()


@pytest.mark.parametrize("n", [1, 2, 3])
def test_umap_2d_tiny_falls_back_to_pca(n):
    points = umap_2d(np.random.default_rng(0).normal(size=(n, 16)), seed=0)
    assert points.shape == (n, 2) and points.dtype == np.float32 and np.isfinite(points).all()


def test_scatter_png(tmp_path):
    rng = np.random.default_rng(0)
    clusters = rng.integers(0, 25, size=2000)  # more clusters than colours: the palette cycles
    points = rng.normal(size=(2000, 2)) + clusters[:, None] * 0.3
    path = scatter_png(points, clusters, tmp_path / "umap.png", k=25, title="style space")
    image = _open(path)
    assert image.mode == "RGB" and image.height >= 1000 and image.width > 1000
    assert len(image.getcolors(maxcolors=1 << 16)) > 20  # dots in many colours, not a blank canvas
    assert sorted(p.name for p in tmp_path.iterdir()) == ["umap.png"]


def test_scatter_png_degenerate_points(tmp_path):
    path = scatter_png(np.zeros((3, 2)), np.array([0, 1, 1]), tmp_path / "one_spot.png", k=3)
    assert _open(path).mode == "RGB"


def test_contact_sheet_upscales_small_images(tmp_path, animals):
    images, _ = animals
    captions = [f"{c:.2f}" for c in np.linspace(1, 0.5, 12)]
    path = contact_sheet(images[:12], tmp_path / "sheet.png", "animals", captions=captions, columns=4)
    image = _open(path)
    assert image.mode == "RGB"
    # 4 tiles of at least 64 px per row and 3 rows with captions under a title bar.
    assert image.width >= 4 * 64 and image.height >= 3 * 64 + 30
    empty = _open(contact_sheet(images[:0], tmp_path / "empty.png", "nothing", captions=None, columns=4))
    assert empty.width > 0


def test_cluster_sheets(tmp_path, animals):
    images, labels = animals
    clusters = labels.copy()
    clusters[clusters == 3] = 4  # cluster 3 ends up empty
    confidence = np.random.default_rng(0).random(len(images)).astype(np.float32)
    loaded: list[int] = []

    def images_fn(indices: np.ndarray) -> np.ndarray:
        loaded.extend(np.asarray(indices).tolist())
        return images[indices]

    paths = cluster_sheets(images_fn, clusters, confidence, k=11, out_dir=tmp_path / "sheets", per_side=8)
    assert [p.name for p in paths] == [f"cluster_{i:03d}.png" for i in range(11)]
    for p in paths:
        assert _open(p).mode == "RGB"
    assert len(loaded) <= 11 * 16  # only the shown images are loaded
    assert len(loaded) == len(set(loaded))  # a member is never shown twice
    # An empty sheet is just a title and a note, much smaller than a full one.
    assert _open(paths[3]).height < _open(paths[0]).height
    assert _open(paths[10]).height < _open(paths[0]).height


def test_translation_grid(tmp_path):
    images, _, _ = load_mnist_5k()
    sources = np.repeat(images[[0, 600, 1200]][..., None], 3, axis=-1)
    outputs = np.stack([255 - sources, sources, sources // 2], axis=1)  # (R=3, K=3, 28, 28, 3)
    labels = ["source", "cluster 0", "cluster 1", "cluster 2"]
    image = _open(translation_grid(sources, outputs, tmp_path / "grid.png", labels))
    assert image.mode == "RGB"
    assert image.width >= 4 * 64 and image.height >= 3 * 64 + 20
    # The source column holds the (upscaled) source image itself.
    tile_px = np.asarray(image)[image.height - 4 - 84 : image.height - 4, 4 : 4 + 84]
    expected = np.kron(sources[2, ..., 0], np.ones((3, 3), dtype=np.uint8))
    np.testing.assert_array_equal(tile_px[..., 0], expected)


def test_cluster_summary_and_print():
    clusters = np.array([0, 0, 1, 1, 1, 2])
    confidence = np.array([0.9, 0.7, 0.5, 0.6, np.nan, 0.8])
    rows = cluster_summary(clusters, confidence, k=4)
    assert [r["size"] for r in rows] == [2, 3, 1, 0]
    assert rows[0]["mean_confidence"] == pytest.approx(0.8)
    assert rows[1]["mean_confidence"] == pytest.approx(0.55)  # NaN confidences are skipped
    assert math.isnan(rows[3]["mean_confidence"]) and rows[3]["share"] == 0.0
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)

    buf = io.StringIO()
    console = Console(file=buf, width=120, color_system=None)
    scores = {"acc": 0.81, "nmi": 0.7, "ari": 0.6}
    print_summary(console, rows, scores, baselines={"k-means (pixels)": {"acc": 0.4, "nmi": 0.3, "ari": 0.2}})
    text = buf.getvalue()
    for expected in ("mean confidence", "33.3", "TUNIT", "k-means (pixels)", "0.810", "ACC", "NMI", "ARI"):
        assert expected in text
    buf.truncate(0)
    print_summary(console, rows, None, title="clusters")
    assert "TUNIT" not in buf.getvalue()
