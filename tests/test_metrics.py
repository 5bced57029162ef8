"""Clustering metrics, the k-means baseline and k-NN outlier scores, on real MNIST / animal-mnist pixels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from i2icurate.data.demo import load_animal_mnist, load_digits, load_mnist_5k, write_demo_images
from i2icurate.export.neighbors import build_index, knn_outlier_scores, save_index, use_gpu_faiss
from i2icurate.metrics.clustering import cluster_accuracy, clustering_scores, kmeans_labels


@pytest.fixture(scope="module")
def mnist_1k() -> tuple[np.ndarray, np.ndarray]:
    """1000 real digits, the first 100 of each class (the bundled CSV is sorted by label)."""
    images, labels, _ = load_mnist_5k()
    keep = np.concatenate([np.flatnonzero(labels == c)[:100] for c in range(10)])
    return images[keep], labels[keep]


def test_accuracy_is_one_for_permuted_labels():
    y = np.array([0, 0, 1, 1, 2, 2, 2])
    permuted = np.array([2, 0, 1])[y]
    assert cluster_accuracy(y, permuted) == 1.0


def test_accuracy_known_contingency():
    # Cluster 0 holds 3 of class a and 1 of b, cluster 1 holds 2 of b and 1 of a: best match 0->a, 1->b = 5/7.
    y_true = ["a", "a", "a", "b", "b", "b", "a"]
    y_pred = [0, 0, 0, 0, 1, 1, 1]
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 7)


def test_accuracy_more_clusters_than_classes():
    # Three clusters, two classes: only two clusters can be matched, the third counts as wrong.
    y_true = ["cat", "cat", "dog", "dog", "dog", "cat"]
    y_pred = ["x", "x", "y", "y", "z", "z"]
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 6)


def test_accuracy_fewer_clusters_than_classes():
    assert cluster_accuracy([0, 1, 2, 2], [5, 5, 7, 7]) == pytest.approx(3 / 4)


def test_scores_ignore_unlabeled_samples():
    y_true = ["bird", "bird", "", None, "cow", "cow"]
    y_pred = [1, 1, 0, 1, 0, 0]
    scores = clustering_scores(y_true, y_pred)
    assert scores == {"acc": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}


def test_scores_match_sklearn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, size=300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 6, size=300))
    scores = clustering_scores(y_true, y_pred)
    assert scores["nmi"] == pytest.approx(normalized_mutual_info_score(y_true, y_pred))
    assert scores["ari"] == pytest.approx(adjusted_rand_score(y_true, y_pred))
    assert 0.6 < scores["acc"] < 1.0


def test_scores_all_unlabeled_are_nan():
    scores = clustering_scores(["", None], [0, 1])
    assert all(np.isnan(v) for v in scores.values())


def test_kmeans_on_raw_mnist_pixels_beats_chance(mnist_1k):
    images, labels = mnist_1k
    pred = kmeans_labels(images.reshape(len(images), -1) / 255.0, k=10, seed=0)
    assert pred.shape == (1000,) and pred.min() >= 0 and pred.max() < 10
    assert cluster_accuracy(labels, pred) > 0.4
    np.testing.assert_array_equal(pred, kmeans_labels(images.reshape(len(images), -1) / 255.0, k=10, seed=0))


def test_the_digits_set_is_real_and_written_as_class_folders(tmp_path):
    images, labels, names = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 255
    assert np.bincount(labels).min() >= 170 and names == tuple("0123456789")
    pred = kmeans_labels(images.reshape(len(images), -1) / 255.0, k=10, seed=0)
    assert cluster_accuracy(labels, pred) > 0.6  # pixels already separate most digits: real digits, not noise
    folder = write_demo_images(tmp_path / "digits", "digits", per_class=3)
    assert sorted(p.name for p in folder.iterdir()) == list(names)
    assert len(list(folder.glob("*/*.png"))) == 30


def test_outlier_score_finds_far_vector(mnist_1k):
    images, _ = mnist_1k
    x = images[:300].reshape(300, -1).astype(np.float32) / 255.0
    far = np.full((1, x.shape[1]), 50.0, dtype=np.float32)
    scores = knn_outlier_scores(np.vstack([x, far]), k=10)
    assert scores.shape == (301,) and scores.dtype == np.float32
    assert int(np.argmax(scores)) == 300
    assert np.all(scores[:300] > 0)


def test_outlier_score_with_duplicates():
    images, _, _ = load_animal_mnist()
    x = images[:200].reshape(200, -1).astype(np.float32) / 255.0
    # Image 0 appears 5 times in all: its copies are real zero-distance neighbours of each other...
    dup = np.vstack([x, np.repeat(x[:1], 4, axis=0)])
    scores = knn_outlier_scores(dup, k=3)
    assert np.allclose(scores[[0, 200, 201, 202, 203]], 0.0)
    # ...but no other image gets a zero score from matching itself.
    assert np.all(scores[1:200] > 0)
    plain = knn_outlier_scores(x, k=3)
    assert plain[0] > 0
    # Without the duplicates the scores of the distinct images are k-NN distances to others, never zero.
    assert np.all(plain > 0)


def test_outlier_k_is_clipped():
    x = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
    scores = knn_outlier_scores(x, k=10)
    assert scores.shape == (4,) and np.all(np.isfinite(scores)) and np.all(scores > 0)
    # With k = N-1 every image's score is the mean distance to all the others.
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.testing.assert_allclose(scores, d.sum(axis=1) / 3, rtol=1e-4)
    assert knn_outlier_scores(x[:1]).tolist() == [0.0]


def test_index_round_trip(tmp_path, mnist_1k):
    import faiss

    images, _ = mnist_1k
    x = images[:100].reshape(100, -1).astype(np.float32)
    index = build_index(x)
    path = tmp_path / "sub" / "embeddings.faiss"
    save_index(index, path)
    loaded = faiss.read_index(str(path))
    assert loaded.ntotal == 100 and loaded.d == x.shape[1]
    _, ids = loaded.search(x[:5], 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert [p.name for p in path.parent.iterdir()] == ["embeddings.faiss"]  # no temp file left behind
    assert isinstance(use_gpu_faiss(), bool)
