"""Shared fixtures: real small image folders written from the registry-packaged datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from i2icurate.data.demo import write_demo_images

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")


@pytest.fixture(scope="session")
def animal_folder(tmp_path_factory) -> Path:
    """20 real animal-mnist silhouettes per class in class-named folders (200 PNGs)."""
    return write_demo_images(tmp_path_factory.mktemp("animals"), "animal-mnist", per_class=20)


@pytest.fixture(scope="session")
def mnist_folder(tmp_path_factory) -> Path:
    """20 real MNIST digits per class in class-named folders (200 PNGs)."""
    return write_demo_images(tmp_path_factory.mktemp("mnist"), "mnist-5k", per_class=20)
