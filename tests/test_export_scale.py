"""Export at scale on real data: streamed embedding, IVF index and sampled UMAP, forced on with tiny thresholds."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from i2icurate.data.cache import load_cache
from i2icurate.data.demo import load_animal_mnist
from i2icurate.errors import UserError
from i2icurate.export import neighbors, visuals
from i2icurate.export.inference import embed, embed_to_npy
from i2icurate.export.neighbors import build_index, ivf_lists, knn_outlier_scores, save_index
from i2icurate.export.pipeline import export_run, load_trained
from i2icurate.export.visuals import umap_2d
from i2icurate.runs import read_csv, read_json

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(toy_discover_run) -> tuple[torch.nn.Module, np.ndarray]:
    """The toy run's EMA guiding network and its (200, 32, 32, 3) uint8 cache memmap."""
    cfg = read_json(toy_discover_run / "config.json")
    guiding, _ = load_trained(toy_discover_run, cfg, CPU)
    return guiding, load_cache(toy_discover_run / "cache", cfg["img_size"])


@pytest.fixture(scope="module")
def real_styles(trained) -> np.ndarray:
    """Style codes (1000, 32) of 1,000 real animal silhouettes (padded from 28 to 32 px) from the toy network."""
    guiding, _ = trained
    images = load_animal_mnist()[0][:1000]
    rgb = np.repeat(np.pad(images, ((0, 0), (2, 2), (2, 2)), mode="edge")[..., None], 3, axis=-1)
    return embed(guiding, rgb, CPU)[1]


def test_streamed_embedding_equals_in_memory(trained, tmp_path):
    guiding, cache = trained
    probs, styles = embed(guiding, np.array(cache), CPU, batch_size=48)  # an in-memory copy, uneven last batch
    seen = []
    mm_probs, mm_styles = embed_to_npy(guiding, cache, CPU, tmp_path / "p.npy", tmp_path / "s.npy", batch_size=48,
                                       progress=seen.append)
    assert isinstance(mm_styles, np.memmap)  # handed back memory-mapped, not loaded
    np.testing.assert_array_equal(np.asarray(mm_probs), probs)
    np.testing.assert_array_equal(np.asarray(mm_styles), styles)
    assert seen == [48, 96, 144, 192, 200]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy", "s.npy"]  # no temporary file left behind


def test_assignments_match_the_in_memory_computation(toy_discover_run, trained):
    """The streamed export writes exactly what the whole-array formulas give for the same network."""
    guiding, cache = trained
    probs, styles = embed(guiding, np.array(cache), CPU)
    order = np.sort(probs, axis=1)
    outliers = knn_outlier_scores(styles)
    rows = read_csv(toy_discover_run / "images.csv")
    expected = ["path,cluster,confidence,margin,outlier_score,duplicate_of"] + [
        f"{r['path']},{c},{conf:.6f},{m:.6f},{o:.6f},{r['duplicate_of']}"
        for r, c, conf, m, o in zip(rows, probs.argmax(axis=1), order[:, -1], order[:, -1] - order[:, -2], outliers,
                                    strict=True)
    ]
    assert (toy_discover_run / "assignments.csv").read_text().splitlines() == expected
    np.testing.assert_array_equal(np.load(toy_discover_run / "embeddings.npy"), styles)
    clusters = probs.argmax(axis=1)
    means = np.stack([styles[clusters == c].mean(axis=0) if (clusters == c).any() else np.zeros(styles.shape[1])
                      for c in range(probs.shape[1])])
    np.testing.assert_allclose(np.load(toy_discover_run / "prototypes.npy"), means, atol=1e-6)


def test_ivf_index_and_outlier_scores_track_the_exact_ones(real_styles, tmp_path):
    import faiss

    exact = knn_outlier_scores(real_styles)
    assert faiss.try_extract_index_ivf(build_index(real_styles)) is None  # under the default threshold: exact
    for nprobe, min_corr in [(1, 0.9), (4, 0.99)]:
        index = build_index(real_styles, exact_max_rows=50, nprobe=nprobe, chunk_rows=300)
        ivf = faiss.try_extract_index_ivf(index)
        assert ivf is not None and ivf.nlist == ivf_lists(1000) == 25 and ivf.nprobe == nprobe
        assert index.ntotal == 1000
        approx = knn_outlier_scores(real_styles, index=index, chunk_rows=300)
        assert approx.shape == (1000,) and np.isfinite(approx).all()
        assert np.corrcoef(exact, approx)[0, 1] > min_corr
        # An approximate search can only miss near neighbours, never find nearer ones.
        assert np.all(approx >= exact - 1e-5)
    save_index(index, tmp_path / "embeddings.faiss")
    loaded = faiss.read_index(str(tmp_path / "embeddings.faiss"))
    assert faiss.extract_index_ivf(loaded).nprobe == 4
    _, ids = loaded.search(np.ascontiguousarray(real_styles[:5]), 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_chunked_exact_outlier_scores_equal_one_pass(real_styles):
    one_pass = knn_outlier_scores(real_styles)
    np.testing.assert_allclose(knn_outlier_scores(real_styles, chunk_rows=128), one_pass, rtol=1e-5)


def test_umap_on_a_sample_then_transform(real_styles, tmp_path):
    out = np.lib.format.open_memmap(tmp_path / "umap.npy", mode="w+", dtype=np.float32, shape=(1000, 2))
    points = umap_2d(real_styles, seed=0, fit_max_rows=300, sample_rows=200, chunk_rows=256, out=out)
    assert points is out and np.isfinite(points).all()
    # The transformed points land near their nearest sampled neighbour in style space: the layout stays coherent.
    sample = np.sort(np.random.default_rng(0).choice(1000, 200, replace=False))
    rest = np.setdiff1d(np.arange(1000), sample)
    d = ((real_styles[rest, None] - real_styles[None, sample]) ** 2).sum(-1)
    nearest = sample[d.argmin(axis=1)]
    gap = np.linalg.norm(points[rest] - points[nearest], axis=1)
    chance = np.linalg.norm(points[rest] - points[np.random.default_rng(1).choice(sample, len(rest))], axis=1)
    assert np.median(gap) < 0.4 * np.median(chance)  # measured: 0.21


def test_export_with_ivf_and_sampled_umap(toy_discover_run, tmp_path, monkeypatch):
    """A whole export with the large-folder paths switched on: same assignments, IVF index, sampled UMAP."""
    import faiss

    run = tmp_path / "run"
    shutil.copytree(toy_discover_run, run, ignore=shutil.ignore_patterns("tb", "clusters", "*.png"))
    monkeypatch.setattr(neighbors, "EXACT_MAX_ROWS", 50)
    monkeypatch.setattr(visuals, "UMAP_FIT_MAX_ROWS", 100)
    monkeypatch.setattr(visuals, "UMAP_SAMPLE_ROWS", 80)
    summary = export_run(run, Console(quiet=True))
    assert summary["images"] == 200

    def table(folder: Path) -> list[list[str]]:
        with open(folder / "assignments.csv", newline="") as f:
            return list(csv.reader(f))

    new, old = table(run), table(toy_discover_run)
    assert [r[:4] + r[5:] for r in new] == [r[:4] + r[5:] for r in old]  # all but outlier_score unchanged
    approx, exact = (np.array([float(r[4]) for r in t[1:]]) for t in (new, old))
    assert np.corrcoef(approx, exact)[0, 1] > 0.9 and np.all(approx >= exact - 1e-5)
    assert faiss.try_extract_index_ivf(faiss.read_index(str(run / "embeddings.faiss"))) is not None
    points = np.load(run / "umap.npy")
    assert points.shape == (200, 2) and points.dtype == np.float32 and np.isfinite(points).all()
    assert len(list((run / "clusters").glob("cluster_*.png"))) == summary["k"]
    assert not [p.name for p in run.rglob("*.tmp")]


def test_export_refuses_a_table_that_does_not_match_the_cache(toy_discover_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(toy_discover_run, run, ignore=shutil.ignore_patterns("tb", "clusters", "*.png"))
    lines = (run / "images.csv").read_text().splitlines(keepends=True)
    (run / "images.csv").write_text("".join(lines[:-1]))
    before = (run / "embeddings.npy").read_bytes()
    with pytest.raises(UserError, match="lists 199 images but the cache holds 200"):
        export_run(run, Console(quiet=True))
    assert (run / "embeddings.npy").read_bytes() == before  # nothing was replaced
