"""The speed options change how a TUNIT step runs, never what it computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i2icurate.config import resolve
from i2icurate.data.cache import build_cache, load_cache
from i2icurate.data.scan import scan_folder
from i2icurate.engines.tunit import TunitTrainer, speed_settings


@pytest.fixture(scope="module")
def images(animal_folder, tmp_path_factory):
    cache = tmp_path_factory.mktemp("speed_cache")
    build_cache(animal_folder, scan_folder(animal_folder).files, 32, cache, workers=1, max_pixels=10**8)
    return load_cache(cache, 32)


def _losses(images, steps: int = 3, **options) -> list[dict[str, float]]:
    cfg = resolve("discover", "tiny", batch_size=16, iters=100, warmup_frac=0.0, ema_g_delay=0.0, device="cpu",
                  **options)
    trainer = TunitTrainer(cfg, images)
    return [trainer.step(i) for i in range(steps)]


def test_auto_resolves_per_device():
    cfg = resolve("discover", "tiny")
    on_cpu = speed_settings(cfg, torch.device("cpu"))
    on_gpu = speed_settings(cfg, torch.device("cuda"))
    assert not on_cpu.channels_last and not on_cpu.fused_optim and not on_cpu.compile
    assert on_gpu.channels_last and on_gpu.fused_optim
    assert speed_settings({**cfg, "compile": "on"}, torch.device("cpu")).compile
    # a run made before the options existed still resolves
    assert speed_settings({}, torch.device("cpu")).r1_every == 1


def test_channels_last_and_multi_tensor_optimisers_give_the_same_losses(images):
    plain = _losses(images, channels_last="off", fused_optim="off")
    fast = _losses(images, channels_last="on", fused_optim="on")
    # The first full step (E, D with R1, G) agrees to float rounding; later steps drift apart the way any
    # reordering of float sums makes a GAN drift (RMSprop's first updates are close to sign steps), so they are
    # only checked for being finite.
    assert plain[0].keys() == fast[0].keys()
    for key in plain[0]:
        assert fast[0][key] == pytest.approx(plain[0][key], rel=1e-4, abs=1e-5), key
    assert all(np.isfinite(v) for step in fast for v in step.values())


def test_lazy_r1_runs_every_nth_discriminator_step_with_n_times_the_weight(images):
    lazy = _losses(images, steps=4, r1_every=2)
    assert ["loss/r1" in step for step in lazy] == [True, False, True, False]
    every = _losses(images, steps=1, r1_every=1)
    assert lazy[0]["loss/r1"] == pytest.approx(every[0]["loss/r1"], rel=1e-5)  # the same penalty, weighted 2x
    assert all(np.isfinite(v) for step in lazy for v in step.values())


def test_compiled_step_matches_the_eager_step(images):
    eager = _losses(images, steps=2, compile="off")
    compiled = _losses(images, steps=2, compile="on")
    for key in eager[0]:
        assert compiled[0][key] == pytest.approx(eager[0][key], rel=1e-3, abs=1e-4), key
    assert all(np.isfinite(v) for step in compiled for v in step.values())
