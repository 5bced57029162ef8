"""A plain install works: without faiss the tool falls back to exact scikit-learn neighbours and k-means, says so
before training, and a missing `metrics` extra stops `translate --eval` before any work (issue 10, item 1)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from i2icurate.export.neighbors import ExactIndex, build_index, knn_outlier_scores, save_index
from i2icurate.metrics.clustering import cluster_accuracy, kmeans_labels
from tests.cli_helpers import TOY, cli, copy_images


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")  # long temporary paths stay on one line of captured output


def test_discover_without_faiss_finishes_and_brackets_survive(animal_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now fails, as without the cpu/gpu extra
    source = copy_images(animal_folder, tmp_path / "shots[raw]", 12)
    project = tmp_path / "runs[cpu]"
    code, out, err = cli(capsys, "discover", str(source), "-k", "3", *TOY, "--iters", "4", "--project", str(project))
    assert code == 0, err
    run = project / "discover" / "exp1"
    assert (run / "assignments.csv").is_file() and (run / "summary.json").is_file()
    assert not (run / "embeddings.faiss").exists()
    notice = next(line for line in out.splitlines() if line.startswith("faiss is not installed"))
    assert "pip install 'i2icurate[cpu]' (or 'i2icurate[gpu]' on CUDA machines)" in notice
    assert out.index("faiss is not installed") < out.index("TUNIT:")  # told before training, not after
    assert f"run folder: {run}" in out and f"images from {source}" in out


def test_exact_neighbours_without_faiss_match_faiss(toy_discover_run, monkeypatch):
    styles = np.load(toy_discover_run / "embeddings.npy")
    styles = np.vstack([styles, styles[:5]])  # exact duplicates too
    with_faiss = knn_outlier_scores(styles, k=10)
    monkeypatch.setitem(sys.modules, "faiss", None)
    index = build_index(styles, chunk_rows=64)
    assert isinstance(index, ExactIndex) and index.ntotal == len(styles)
    np.testing.assert_allclose(knn_outlier_scores(styles, k=10, index=index), with_faiss, rtol=1e-4, atol=1e-5)


def test_kmeans_without_faiss(mnist_folder, monkeypatch):
    from i2icurate.data.imageio import decode_to_array

    files = sorted(mnist_folder.rglob("*.png"))
    x = np.stack([decode_to_array(p, 28, 10**8)[..., 0] for p in files]).reshape(len(files), -1) / 255.0
    truth = [p.parent.name for p in files]
    monkeypatch.setitem(sys.modules, "faiss", None)
    pred = kmeans_labels(x, k=10, seed=0)
    assert cluster_accuracy(truth, pred) > 0.4
    np.testing.assert_array_equal(pred, kmeans_labels(x, k=10, seed=0))


def test_save_index_without_faiss_removes_a_stale_file(tmp_path, monkeypatch):
    stale = tmp_path / "embeddings.faiss"
    stale.write_bytes(b"old")
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert save_index(build_index(np.eye(4, dtype=np.float32)), stale) is False and not stale.exists()


def test_translate_eval_without_metrics_extra_fails_before_training(toy_discover_run, tmp_path, monkeypatch,
                                                                    capsys):
    import i2icurate.metrics.fid as fid

    monkeypatch.setattr(fid, "_PACKAGE", "i2icurate_no_such_package")
    project = tmp_path / "runs"
    code, out, err = cli(capsys, "translate", "--from", "0", "--to", "1", "--run", str(toy_discover_run),
                         "--model", "ugatit", "--preset", "tiny", "--iters", "2", "--eval", "--project", str(project))
    assert code == 2 and "pip install 'i2icurate[metrics]'" in err
    assert not (project / "translate").exists() and "run folder" not in out
