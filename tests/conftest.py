"""Shared fixtures: real small image folders written from the registry-packaged datasets."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from i2icurate.data.demo import write_demo_images

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")


@pytest.fixture
def one_thread():
    """Tiny networks: one thread is as fast as two and does not fight other jobs on a busy machine (the process-wide
    count is restored afterwards). Modules of toy-model tests use it with `pytest.mark.usefixtures`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def animal_folder(tmp_path_factory) -> Path:
    """20 real animal-mnist silhouettes per class in class-named folders (200 PNGs)."""
    return write_demo_images(tmp_path_factory.mktemp("animals"), "animal-mnist", per_class=20)


@pytest.fixture(scope="session")
def mnist_folder(tmp_path_factory) -> Path:
    """20 real MNIST digits per class in class-named folders (200 PNGs)."""
    return write_demo_images(tmp_path_factory.mktemp("mnist"), "mnist-5k", per_class=20)


# Toy discover settings: the tiny networks, a handful of iterations, the GAN phase starting half-way.
TOY_DISCOVER = {"preset": "tiny", "batch_size": 16, "warmup_frac": 0.5, "ema_g_delay": 0.1, "workers": 1,
                "log_every": 2, "sample_every": 4, "ckpt_every": 5, "ema_beta": 0.9}


@pytest.fixture(scope="session")
def toy_discover_run(animal_folder, tmp_path_factory) -> Path:
    """A finished 12-iteration discover run on the 200 real animal images (shared, treat as read-only)."""
    from rich.console import Console

    from i2icurate.commands.discover import discover

    project = tmp_path_factory.mktemp("shared_runs")
    return discover(animal_folder, iters=12, project=str(project), console=Console(quiet=True), **TOY_DISCOVER)


@pytest.fixture(scope="session")
def small_run(animal_folder, tmp_path_factory) -> tuple[Path, str]:
    """A finished 6-iteration discover run with K=7 on 12 real images (1 torch thread), and what it printed."""
    import io

    from rich.console import Console

    from i2icurate.commands.discover import discover
    from tests.cli_helpers import copy_images

    folder = copy_images(animal_folder, tmp_path_factory.mktemp("small") / "twelve", 12)
    console = Console(record=True, width=500, file=io.StringIO())
    run = discover(folder, k=7, iters=6, project=str(tmp_path_factory.mktemp("small_runs")), console=console,
                   threads=1, **{**TOY_DISCOVER, "batch_size": 8})
    return run, console.export_text()


# The default discover (pretrained trunk) made toy-sized: the trunk reads 32 px, 8 head updates then 8 generator steps.
TOY_KW = {"iters": 16, "warmup_frac": 0.5, "head_batch": 64, "batch_size": 16, "backbone_size": 32, "workers": 1,
          "log_every": 2, "ckpt_every": 5, "sample_every": 8}


@pytest.fixture(scope="session")
def pretrained_run(animal_folder, tmp_path_factory) -> Path:
    """A finished toy run of the default discover (EfficientNet-Lite0 trunk) on the 200 real animal images."""
    from rich.console import Console

    from i2icurate.commands.discover import discover

    return discover(animal_folder, k=10, project=str(tmp_path_factory.mktemp("pre")), eval_labels="folders",
                    console=Console(quiet=True), **TOY_KW)


def load_bench(script: str) -> ModuleType:
    """A script of bench/ as a module, registered in sys.modules under its stem (dataclasses look it up there)."""
    path = Path(__file__).resolve().parents[1] / "bench" / script
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
