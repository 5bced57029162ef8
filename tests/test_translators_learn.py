"""Every translator learns: a few dozen iterations on real images make the loss that must fall fall (CPU, seeded).

U-GAT-IT: cycle + identity L1; SRUNIT: PatchNCE; TUNIT's generator (trained by discover): reconstruction L1. Each
also translates its source images into something other than the source images. A model that silently stops
learning (a zero learning rate, a frozen network, a detached loss) fails here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from i2icurate.commands.translate import resolve_translate
from i2icurate.config import resolve
from i2icurate.data.demo import load_animal_mnist
from i2icurate.engines.tunit import TunitTrainer
from i2icurate.translators import srunit, ugatit

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: toy networks on one thread


def _domain(images: np.ndarray, labels: np.ndarray, names: tuple[str, ...], name: str, n: int) -> np.ndarray:
    idx = np.flatnonzero(labels == names.index(name))[:n]
    return np.stack([np.asarray(Image.fromarray(images[i]).convert("RGB").resize((32, 32), Image.BILINEAR))
                     for i in idx])


@pytest.fixture(scope="module")
def cats_and_zebras() -> tuple[np.ndarray, np.ndarray]:
    """24 real 'cat' and 24 real 'zebra' animal-mnist silhouettes (the demo data) as 32x32 RGB uint8."""
    images, labels, names = load_animal_mnist()
    return _domain(images, labels, names, "cat", 24), _domain(images, labels, names, "zebra", 24)


def _signed(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1


def _falls(values: list[float], by: float, k: int = 5) -> tuple[float, float]:
    """(mean of the first k, mean of the last k), asserting the last are below `by` times the first."""
    first, last = float(np.mean(values[:k])), float(np.mean(values[-k:]))
    assert all(math.isfinite(v) for v in values)
    assert last < by * first, f"loss did not fall: first {k} {first:.4f}, last {k} {last:.4f}"
    return first, last


def _changes(out: torch.Tensor, x: torch.Tensor) -> None:
    assert out.shape == x.shape and float(out.min()) >= -1 and float(out.max()) <= 1
    assert float((out - x).abs().mean()) > 0.05  # outputs are not the inputs handed back


def test_ugatit_cycle_and_identity_fall(cats_and_zebras) -> None:
    a, b = cats_and_zebras
    cfg = resolve_translate("ugatit", "tiny", {"device": "cpu", "precision": "fp32", "iters": 40, "seed": 0})
    t = ugatit.Translator(cfg, a, b, CPU)
    history = [t.step(i) for i in range(40)]
    _falls([h["loss/cycle"] + h["loss/identity"] for h in history], 0.8)
    _changes(t.translate(_signed(a[:8])), _signed(a[:8]))


def test_srunit_patch_nce_falls(cats_and_zebras) -> None:
    a, b = cats_and_zebras
    cfg = resolve_translate("srunit", "tiny", {"device": "cpu", "precision": "fp32", "iters": 40, "seed": 0})
    t = srunit.Translator(cfg, a, b, CPU)
    history = [t.step(i) for i in range(40)]
    assert any(h["loss/sr"] > 0 for h in history)  # the SR term is on after the first quarter, as the preset says
    _falls([h["loss/nce"] for h in history], 0.9)
    _changes(t.translate(_signed(a[:8])), _signed(a[:8]))


def test_tunit_generator_reconstruction_falls(cats_and_zebras) -> None:
    a, b = cats_and_zebras
    images = np.concatenate([a, b])
    # discover's tiny networks, every iteration a GAN iteration, a short EMA so the averaged generator moves
    cfg = resolve("discover", "tiny", iters=30, warmup_frac=0.0, ema_g_delay=0.0, ema_beta=0.8, batch_size=16,
                  device="cpu", precision="fp32", seed=0)
    trainer = TunitTrainer(cfg, images, device=CPU)
    history = [trainer.step(i) for i in range(30)]
    _falls([h["loss/rec"] for h in history], 0.8)
    # the translator's use of it: the EMA generator with domain B's mean style code
    with torch.no_grad():
        trainer.E_ema.eval()
        trainer.G_ema.eval()
        _, styles = trainer.E_ema(_signed(b))
        x = _signed(a[:8])
        out = trainer.G_ema(x, styles.mean(0, keepdim=True).expand(len(x), -1))
    _changes(out.clamp(-1, 1), x)
