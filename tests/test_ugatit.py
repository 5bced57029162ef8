"""U-GAT-IT: reference parameter counts, shapes at 32 px, a short run on real silhouettes, exact resume (CPU)."""

from __future__ import annotations

import copy
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from i2icurate.commands.translate import resolve_translate
from i2icurate.config import TRANSLATE
from i2icurate.data.demo import load_animal_mnist
from i2icurate.errors import UserError
from i2icurate.models.ugatit import ILN, AdaILN, Discriminator, ResnetGenerator, fit_layers
from i2icurate.models.ugatit.losses import cam_loss, d_loss, g_adv_loss, lsgan
from i2icurate.translators import ugatit

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: toy networks on one thread


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def domains() -> tuple[np.ndarray, np.ndarray]:
    """16 real 'cat' and 16 real 'zebra' silhouettes, 28×28 grey -> 32×32 RGB uint8."""
    images, labels, names = load_animal_mnist()

    def domain(name: str) -> np.ndarray:
        idx = np.flatnonzero(labels == names.index(name))[:16]
        rgb = [Image.fromarray(images[i]).convert("RGB").resize((32, 32), Image.BILINEAR) for i in idx]
        return np.stack([np.asarray(im) for im in rgb])

    return domain("cat"), domain("zebra")


def _tiny(**overrides) -> dict:
    return resolve_translate("ugatit", "tiny", {"device": "cpu", "precision": "fp32", **overrides})


def _rhos(translator: ugatit.Translator) -> torch.Tensor:
    return torch.cat([m.rho.detach().flatten() for g in (translator.G_AB, translator.G_BA) for m in g.modules()
                      if isinstance(m, AdaILN)])


# ---- architecture -------------------------------------------------------------------------------------------------

def test_reference_parameter_counts() -> None:
    torch.manual_seed(0)
    assert _count(ResnetGenerator(256, light=True)) == 10_589_888
    assert _count(ResnetGenerator(128, light=True)) == 10_589_888
    assert _count(ResnetGenerator(128)) == 77_633_216
    with torch.device("meta"):  # 279 M parameters: count them without allocating 1.1 GB
        full_256 = ResnetGenerator(256)
    assert _count(full_256) == 278_959_808
    assert _count(full_256) - _count(ResnetGenerator(256, light=True)) == (64 * 64 * 256 - 256) * 256  # the big FC
    assert _count(Discriminator(7)) == 53_130_176
    assert _count(Discriminator(5)) == 3_290_560


def test_fit_layers_keeps_the_map_at_least_2x2() -> None:
    assert [fit_layers(7, s) for s in (32, 64, 96, 128, 256)] == [5, 6, 6, 7, 7]
    assert [fit_layers(5, s) for s in (32, 64, 256)] == [5, 5, 5]
    torch.manual_seed(0)
    for size in (32, 64):
        logits, cam, _ = Discriminator(fit_layers(7, size), ch=4)(torch.zeros(1, 3, size, size))
        assert logits.shape[-1] >= 2 and cam.shape == (1, 2)


@pytest.mark.parametrize("light", [True, False])
def test_generator_shapes_and_ranges(light: bool) -> None:
    torch.manual_seed(0)
    g = ResnetGenerator(32, ch=8, n_res=2, light=light)
    out, cam, heatmap = g(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    assert cam.shape == (2, 2) and heatmap.shape == (2, 1, 8, 8)
    norms = [m for m in g.modules() if isinstance(m, AdaILN)]
    assert all(float(m.rho.detach().mean()) == pytest.approx(0.0 if isinstance(m, ILN) else 0.9) for m in norms)
    with torch.no_grad():
        for i, m in enumerate(norms):
            m.rho.fill_(1.5 if i % 2 else -0.3)
    g.clip_rho()
    assert all(0.0 <= float(m.rho.detach().min()) and float(m.rho.detach().max()) <= 1.0 for m in norms)


def test_instance_layer_norm_matches_the_two_normalisations() -> None:
    """The folded AdaILN/ILN mix equals ρ·IN(x) + (1 − ρ)·LN(x) with unbiased variances, values and gradients."""
    torch.manual_seed(0)
    norm = AdaILN(8)
    with torch.no_grad():
        norm.rho.copy_(torch.rand(1, 8, 1, 1))
    x = (torch.randn(3, 8, 5, 7) * 2 + 0.5).requires_grad_()
    x_in = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), keepdim=True) + norm.eps)
    x_ln = (x - x.mean((1, 2, 3), keepdim=True)) / torch.sqrt(x.var((1, 2, 3), keepdim=True) + norm.eps)
    expected = norm.rho * x_in + (1 - norm.rho) * x_ln
    got = norm.mix(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(got)
    grads = torch.autograd.grad((got * weights).sum(), (x, norm.rho))
    wanted = torch.autograd.grad((expected * weights).sum(), (x, norm.rho))
    for a, b in zip(grads, wanted, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_discriminator_shapes_at_32px() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    for n_layers, side in ((fit_layers(7, 32), 2), (fit_layers(5, 32), 2)):
        logits, cam, heatmap = Discriminator(n_layers, ch=8)(x)
        assert logits.shape == (3, 1, side, side) and cam.shape == (3, 2) and heatmap.shape[:2] == (3, 1)


def test_losses() -> None:
    ones, zeros = torch.ones(2, 1, 2, 2), torch.zeros(2, 2)
    assert lsgan(ones, 1.0) == 0 and lsgan(ones, 0.0) == 1
    assert d_loss((ones, torch.ones(2, 2)), (torch.zeros(2, 1, 2, 2), zeros)) == 0
    assert g_adv_loss((torch.zeros(2, 1, 2, 2), zeros)) == 2
    big = torch.full((2, 1), 50.0)
    assert float(cam_loss(big, -big)) == pytest.approx(0.0, abs=1e-6)
    assert float(cam_loss(torch.zeros(2, 1), torch.zeros(2, 1))) == pytest.approx(2 * math.log(2))


# ---- options and schedule -----------------------------------------------------------------------------------------

def test_options_and_presets() -> None:
    assert not {o.name for o in ugatit.OPTIONS} & set(TRANSLATE)
    full = resolve_translate("ugatit", "full", {})
    assert (full["lr"], full["batch_size"], full["iters"], full["img_size"], full["ugatit_size"]) == \
        (1e-4, 1, 1_000_000, 256, "full")
    tiny = _tiny()
    assert (tiny["img_size"], tiny["ch"], tiny["n_res"], tiny["ugatit_size"]) == (32, 8, 2, "light")


def test_linear_decay() -> None:
    factor = ugatit.linear_decay(100, 0.5)
    assert factor(0) == factor(49) == factor(50) == 1.0
    assert factor(75) == 0.5 and factor(100) == 0.0
    assert ugatit.linear_decay(100, 0.0)(99) == 1.0


# ---- training on real images --------------------------------------------------------------------------------------

def test_short_run_learns(domains) -> None:
    a, b = domains
    translator = ugatit.Translator(_tiny(), a, b, torch.device("cpu"))
    history = [translator.step(i) for i in range(30)]
    assert translator.step_count == 30
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert set(history[0]) == set(ugatit.LOSS_NAMES)
    rec = [h["loss/cycle"] + h["loss/identity"] for h in history]
    assert np.mean(rec[-5:]) < 0.9 * np.mean(rec[:5])
    rho = _rhos(translator)
    assert float(rho.min()) >= 0 and float(rho.max()) <= 1
    x = torch.from_numpy(a[:5]).permute(0, 3, 1, 2).float() / 127.5 - 1
    out = translator.translate(x)
    assert out.shape == (5, 3, 32, 32) and out.dtype == torch.float32
    assert float(out.min()) >= -1 and float(out.max()) <= 1
    assert not torch.equal(translator.translate(x), translator.G_AB(x)[0])  # the EMA generator translates
    grid = translator.samples()["samples/a_fakeb_cyclea_b_fakea_cycleb"]
    assert grid.shape[0] == 3 and 0 <= float(grid.min()) and float(grid.max()) <= 1
    assert translator.opt_g.param_groups[0]["lr"] == pytest.approx(1e-4)  # decay starts at iteration 100


@pytest.mark.parametrize("extra", [{}, {"cycle_noise": 0.2, "diffaug": 1}])
def test_exact_resume(domains, extra) -> None:
    a, b = domains
    cfg = _tiny(iters=4, **extra)  # the LR decays during these steps, so the scheduler state matters
    original = ugatit.Translator(cfg, a, b, torch.device("cpu"))
    for i in range(2):
        original.step(i)
    buffer = io.BytesIO()
    torch.save(copy.deepcopy(original.state_dict()), buffer)
    expected = original.step(2)

    buffer.seek(0)
    resumed = ugatit.Translator(cfg, a, b, torch.device("cpu"))
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert resumed.step_count == 2
    assert resumed.step(2) == expected
    for name in ("G_AB", "G_BA", "D", "G_AB_ema", "G_BA_ema"):
        for (key, p), q in zip(getattr(original, name).state_dict().items(),
                               getattr(resumed, name).state_dict().values(), strict=True):
            assert torch.equal(p, q), f"{name}.{key}"
    assert resumed.opt_g.param_groups[0]["lr"] == original.opt_g.param_groups[0]["lr"] < 1e-4


def test_bf16_autocast_step(domains) -> None:
    a, b = domains
    translator = ugatit.Translator(_tiny(precision="bf16", g_ema=0.0), a, b, torch.device("cpu"))
    values = translator.step(0)
    assert all(math.isfinite(v) for v in values.values())
    assert translator.translate(torch.zeros(1, 3, 32, 32)).dtype == torch.float32


def test_cycle_noise_and_critic_augmentation(domains) -> None:
    a, b = domains
    plain = ugatit.Translator(_tiny(), a, b, torch.device("cpu"))
    noisy = ugatit.Translator(_tiny(cycle_noise=0.2, diffaug=1), a, b, torch.device("cpu"))
    x = torch.from_numpy(a[:8]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert plain._cycle_input(x) is x and plain._critic_view(x) is x  # the paper's losses by default
    assert float((noisy._cycle_input(x) - x).std()) == pytest.approx(0.2, rel=0.05)
    view = noisy._critic_view(x)
    assert view.shape == x.shape and not torch.equal(view, x)
    assert all(math.isfinite(v) for v in noisy.step(0).values())


def test_crop_training_steps_on_crops_and_translates_whole_images(domains) -> None:
    a, b = (np.stack([np.asarray(Image.fromarray(x).resize((64, 64), Image.BILINEAR)) for x in d]) for d in domains)
    translator = ugatit.Translator(_tiny(img_size=64, crop_size=32), a, b, torch.device("cpu"))
    whole = ugatit.Translator(_tiny(img_size=64), a, b, torch.device("cpu"))
    assert fit_layers(7, 32) < fit_layers(7, 64)
    assert _count(translator.D["GA"]) == _count(Discriminator(fit_layers(7, 32), 8)) < _count(whole.D["GA"])
    seen = []
    forward = translator.G_AB.forward
    translator.G_AB.forward = lambda x: seen.append(tuple(x.shape)) or forward(x)
    assert all(math.isfinite(v) for v in translator.step(0).values())
    assert seen[0] == (12, 3, 32, 32)  # real A, real B and the cycle input of batch 4, each cut to 32 px
    x = torch.from_numpy(a[:2]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert translator.translate(x).shape == (2, 3, 64, 64)  # whole images
    with pytest.raises(UserError, match="crop-size 36 must be a multiple of 4 from 32 to --img-size 32"):
        ugatit.Translator(_tiny(crop_size=36), *domains, torch.device("cpu"))
    with pytest.raises(UserError, match="needs --ugatit-size light"):
        ugatit.Translator(_tiny(img_size=64, crop_size=32, ugatit_size="full"), a, b, torch.device("cpu"))
