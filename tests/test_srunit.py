"""SRUNIT / CUT: reference parameter counts, shapes, exact loss values, SR gradients, training on real images, resume.

CPU only and single-threaded (much faster than two threads fighting a busy machine for these tiny networks).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from i2icurate.config import TRANSLATE, resolve_table
from i2icurate.data.demo import load_animal_mnist
from i2icurate.errors import UserError
from i2icurate.models.cut import Discriminator, Generator, PatchSampleF
from i2icurate.models.cut.losses import patch_nce_loss, perturb, sr_loss
from i2icurate.models.cut.networks import sample_patch_ids
from i2icurate.translators import srunit

REF_LAYERS = [0, 4, 8, 12, 16]
TINY_LAYERS = [0, 4, 8, 12]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: toy networks on one thread


@pytest.fixture(scope="module")
def domains() -> tuple[np.ndarray, np.ndarray]:
    """16 real 'horse' and 16 real 'zebra' animal-mnist silhouettes as 32x32 RGB uint8."""
    images, labels, names = load_animal_mnist()

    def domain(name: str) -> np.ndarray:
        idx = np.flatnonzero(labels == names.index(name))[:16]
        return np.stack([np.array(Image.fromarray(images[i]).convert("RGB").resize((32, 32), Image.BICUBIC))
                         for i in idx])

    return domain("horse"), domain("zebra")


def _cfg(**overrides) -> dict:
    table = {**TRANSLATE, **{o.name: o for o in srunit.OPTIONS}}
    overrides = {"device": "cpu", "precision": "fp32", **overrides}
    return resolve_table("srunit", table, srunit.PRESETS, "tiny", overrides, srunit.DEFAULTS)


def _translator(domains, **overrides) -> srunit.Translator:
    return srunit.Translator(_cfg(**overrides), domains[0], domains[1], torch.device("cpu"))


def _real_batch(domains, n: int = 2) -> torch.Tensor:
    u8 = torch.from_numpy(domains[0][:n])
    return u8.permute(0, 3, 1, 2).float() / 127.5 - 1


# ---- networks -------------------------------------------------------------------------------------------------------

def test_reference_parameter_counts() -> None:
    g = Generator()
    assert g.tap_channels(REF_LAYERS) == [3, 128, 256, 256, 256]
    assert (_count(g), _count(Discriminator()), _count(PatchSampleF(g.tap_channels(REF_LAYERS)))) == (
        11_378_179, 2_764_737, 560_384)
    assert len(g.model) == 32 and g.last_encoder_index == 20


def test_reference_tap_and_patch_shapes() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        taps = Generator().encode(x, REF_LAYERS)
        pred = Discriminator()(x)
    shapes = [(3, 134, 134), (128, 128, 128), (256, 64, 64), (256, 32, 32), (256, 32, 32)]
    assert [tuple(t.shape[1:]) for t in taps] == shapes
    assert pred.shape == (1, 1, 14, 14)


def test_tiny_shapes_taps_and_partial_pass(domains) -> None:
    torch.manual_seed(0)
    g, d = Generator(ngf=8, n_blocks=2), Discriminator(ndf=8)
    x = _real_batch(domains)
    with torch.no_grad():
        out, taps = g.forward_taps(x, TINY_LAYERS)
        assert out.shape == x.shape and out.abs().max() <= 1
        assert [tuple(t.shape[1:]) for t in taps] == [(3, 38, 38), (16, 32, 32), (32, 16, 16), (32, 8, 8)]
        assert all(torch.equal(a, b) for a, b in zip(g.encode(x, TINY_LAYERS), taps, strict=True))
        for layer, tap in zip(TINY_LAYERS, taps, strict=True):
            assert torch.allclose(g.decode_from(tap, layer), out, atol=1e-6)  # "the rest of G" from each tap
        assert d(out).shape == (2, 1, 2, 2)
        emb = PatchSampleF(g.tap_channels(TINY_LAYERS), nc=16)(taps, [torch.arange(5)] * 4)
    assert [tuple(e.shape) for e in emb] == [(10, 16)] * 4
    norms = torch.cat([e.norm(dim=1) for e in emb])
    assert bool(((norms > 0.9) & (norms <= 1)).all())  # x / (||x|| + 1e-7): just below 1 for the tiny init outputs


def test_patch_ids_are_distinct_and_reproducible() -> None:
    gen = torch.Generator().manual_seed(3)
    ids = sample_patch_ids(100, 32, gen, torch.device("cpu"))
    assert len(ids) == 32 and len(set(ids.tolist())) == 32
    assert torch.equal(ids, sample_patch_ids(100, 32, torch.Generator().manual_seed(3), torch.device("cpu")))
    assert len(sample_patch_ids(10, 32, gen, torch.device("cpu"))) == 10


# ---- losses ---------------------------------------------------------------------------------------------------------

def test_patch_nce_exact_values_and_per_image_negatives() -> None:
    s, dim, tau = 8, 16, 0.07
    same = torch.zeros(s, dim)
    same[:, 0] = 1  # image 0: every patch identical -> every logit 1/tau except the -10 diagonal -> ln(S)
    ortho = torch.eye(s, dim)  # image 1: orthonormal patches -> positives 1, negatives 0
    feats = torch.cat([same, ortho])
    loss = patch_nce_loss(feats, feats, n_images=2, tau=tau)
    assert loss.shape == (2 * s,)
    assert torch.allclose(loss[:s], torch.full((s,), math.log(s)), atol=1e-5)
    expected = math.log(1 + (s - 1) * math.exp(-1 / tau) + math.exp(-11 / tau))
    assert torch.allclose(loss[s:], torch.full((s,), expected), atol=1e-6)


def test_perturbation_size_fixed_vs_faithful() -> None:
    feat = torch.randn(2, 5, 4, 4)
    noisy, m = perturb(feat, 1e-3, torch.Generator().manual_seed(0))
    assert m.shape == (2, 16) and bool(((m >= 1e-7) & (m <= 1e-3)).all())
    assert torch.allclose((noisy - feat).norm(dim=1).flatten(1), m, rtol=1e-3)
    noisy, m = perturb(feat, 1e-3, torch.Generator().manual_seed(0), faithful=True)
    size = (noisy - feat).norm(dim=1).flatten(1)
    assert torch.allclose(size, torch.full_like(size, 1e-3), rtol=1e-3)
    assert not torch.allclose(size, m, rtol=1e-2)


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("freeze_head", [False, True])
def test_sr_loss_gradients_reach_g_and_f_only_in_v2(domains, freeze_head: bool, bf16: bool) -> None:
    torch.manual_seed(0)
    g = Generator(ngf=8, n_blocks=2)
    head = PatchSampleF(g.tap_channels(TINY_LAYERS), nc=16)
    ids = sample_patch_ids(16 * 16, 32, torch.Generator().manual_seed(1), torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        _, taps = g.forward_taps(_real_batch(domains), TINY_LAYERS)
        head.project(2, taps[2], ids)  # fills autocast's weight-cast cache: v1 must still keep F out
        loss = sr_loss(g, head, taps[2], TINY_LAYERS[2], 2, ids, 1e-3, torch.Generator().manual_seed(2),
                       freeze_head=freeze_head)
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert g.model[1].weight.grad.abs().sum() > 0  # through the (undetached) source tap into the encoder
    assert g.model[-2].weight.grad.abs().sum() > 0  # through the rest of G
    head_grads = [p.grad for p in head.mlp(2).parameters()]
    if freeze_head:
        assert all(gr is None for gr in head_grads)
    else:
        assert all(gr is not None and gr.abs().sum() > 0 for gr in head_grads)
    assert all(p.grad is None for p in head.mlp(0).parameters())


# ---- training on real images ----------------------------------------------------------------------------------------

def test_cut_phase_reduces_patch_nce(domains) -> None:
    t = _translator(domains, iters=30, inact_frac=1.0)
    history = [t.step(i) for i in range(30)]
    assert all(math.isfinite(v) for h in history for v in h.values())
    nce = [h["loss/nce"] for h in history]
    assert np.mean(nce[-5:]) < np.mean(nce[:5]) - 0.2
    assert all(h["loss/sr"] == 0.0 for h in history)


@pytest.mark.parametrize(("version", "faithful"), [("v2", 0), ("v1", 1)])
def test_sr_inactive_first_quarter_then_active(domains, version: str, faithful: int) -> None:
    t = _translator(domains, iters=8, sr_version=version, sr_faithful=faithful)
    assert t.sr_start == 2
    before = [p.detach().clone() for p in (*t.G.parameters(), *t.F.parameters())]
    out = [t.step(0), t.step(1)]
    assert [o["loss/sr"] for o in out] == [0.0, 0.0]
    after = list((*t.G.parameters(), *t.F.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # CUT updates during warm-up
    out = [t.step(2), t.step(3)]
    assert all(math.isfinite(o["loss/sr"]) and o["loss/sr"] > 0 for o in out)
    assert t.step_count == 4


@pytest.mark.parametrize("extra", [{}, {"diffaug": 1}])
def test_exact_resume(domains, extra) -> None:
    t = _translator(domains, iters=8, **extra)
    for i in range(3):
        t.step(i)
    buffer = io.BytesIO()
    torch.save(t.state_dict(), buffer)
    expected = [t.step(3), t.step(4)]  # crosses the LR decay and the end of the crop jitter

    buffer.seek(0)
    resumed = _translator(domains, iters=8, **extra)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert resumed.step_count == 3
    assert [resumed.step(3), resumed.step(4)] == expected
    for name in ("G", "D", "F", "G_ema"):
        a, b = getattr(t, name).state_dict(), getattr(resumed, name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert t.opt_g.param_groups[0]["lr"] == resumed.opt_g.param_groups[0]["lr"] < 2e-4
    x = _real_batch(domains, 4)
    assert (t._d_view(x) is x) == (not extra)  # with diffaug the discriminator sees shifted, cut-out views


def test_translate_and_samples(domains) -> None:
    t = _translator(domains, iters=4)
    t.step(0)
    x = _real_batch(domains, 3)
    y = t.translate(x)
    assert y.shape == (3, 3, 32, 32) and y.dtype == torch.float32 and not y.requires_grad
    assert y.min() >= -1 and y.max() <= 1 and t.G.training
    grid = t.samples()["samples/realA_fakeB_realB_idtB"]
    assert grid.shape == (3, 4 * 34 + 2, 8 * 34 + 2) and 0 <= grid.min() and grid.max() <= 1


def test_ema_generator_averages_and_translates(domains) -> None:
    t = _translator(domains, iters=6)
    x = _real_batch(domains, 2)
    for i in range(4):
        t.step(i)
    ema, live = dict(t.G_ema.named_parameters()), dict(t.G.named_parameters())
    assert not any(p.requires_grad for p in ema.values())
    assert any(not torch.equal(ema[k], live[k]) for k in live)  # an average, not a copy
    t.G.eval()
    with torch.no_grad():
        assert torch.equal(t.translate(x), t.G_ema.eval()(x).clamp(-1, 1))
    t.G.train()
    plain = _translator(domains, iters=6, g_ema=0.0)
    assert plain.G_ema is None and "G_ema" not in plain.state_dict()["models"]
    plain.load_state_dict(t.state_dict())  # a checkpoint with an EMA copy still loads without one
    older = _cfg(iters=6)
    del older["g_ema"]  # the config.json of a run begun before the option: it resumes as it was, without EMA
    assert srunit.Translator(older, domains[0], domains[1], torch.device("cpu")).G_ema is None


# ---- options --------------------------------------------------------------------------------------------------------

def test_option_names_are_free_and_layers_are_checked(domains) -> None:
    assert not {o.name for o in srunit.OPTIONS} & set(TRANSLATE)
    with pytest.raises(UserError, match="nce-layers 16"):
        _translator(domains, nce_layers="0,4,8,16")
    with pytest.raises(UserError, match="reg-layers 4"):
        _translator(domains, reg_layers="0,4")
    with pytest.raises(UserError, match="batch-size"):
        _translator(domains, batch_size=32)


def test_lr_decays_linearly_to_zero() -> None:
    rule = srunit.lr_lambda(100, 0.5)
    assert rule(0) == rule(48) == 1.0
    assert rule(49) == 1.0 and rule(50) < 1.0 and rule(99) == pytest.approx(1 / 51) and rule(100) == 0.0


def test_crop_training_steps_on_crops_and_translates_whole_images(domains) -> None:
    t = _translator(domains, iters=4, img_size=48, crop_size=32)
    seen = []
    forward = t.G.forward_taps
    t.G.forward_taps = lambda x, layers: seen.append(tuple(x.shape)) or forward(x, layers)
    t.step(0)
    t.step(3)  # in the LR decay: jitter off, still crops
    assert seen == [(8, 3, 32, 32)] * 2  # the translation and identity halves of batch 4, cut to 32 px
    y = t.translate(_real_batch(domains, 2))
    assert y.shape == (2, 3, 32, 32)  # fully convolutional: whole images at their own size
    assert t.samples()["samples/realA_fakeB_realB_idtB"].shape[1] == 4 * 50 + 2  # previews of whole 48 px images
    assert _translator(domains, iters=4, crop_size=32).crop == 0  # a crop the image's size is no crop
    for bad in (34, 28, 52):
        with pytest.raises(UserError, match=f"crop-size {bad} must be a multiple of 4 from 32 to --img-size 48"):
            _translator(domains, img_size=48, crop_size=bad)
