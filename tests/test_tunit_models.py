"""TUNIT networks, losses and the MoCo queue: shapes, parameter counts, loss values, bf16 autocast (CPU, fast)."""

from __future__ import annotations

import math

import pytest
import torch

from i2icurate.models.tunit import Discriminator, Generator, GuidingNetwork, StyleQueue
from i2icurate.models.tunit.losses import d_hinge_loss, g_adv_loss, iic_loss, moco_loss, r1_penalty


def _millions(module: torch.nn.Module) -> float:
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ---- shapes -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("img_size", [32, 64])
def test_shapes_small(img_size: int) -> None:
    x = torch.randn(2, 3, img_size, img_size)
    e = GuidingNetwork(k=5, style_dim=16, width=8)
    g = Generator(img_size, style_dim=16, width=8, mlp_width=32)
    d = Discriminator(img_size, k=5, width=8, max_width=64)
    logits, style = e(x)
    assert logits.shape == (2, 5) and style.shape == (2, 16)
    assert e.features(x).shape == (2, e.feat_dim)
    content = g.encode(x)
    assert content.shape[-2:] == (16, 16)
    out = g(x, style)
    assert out.shape == x.shape
    assert out.abs().max() <= 1.0
    assert torch.equal(g.decode(content, style), out)
    assert d(out, torch.tensor([0, 4])).shape == (2,)


def test_discriminator_selects_domain_logit() -> None:
    d = Discriminator(32, k=4, width=8, max_width=32)
    x = torch.randn(3, 3, 32, 32)
    all_logits = d.main(x).flatten(1)
    y = torch.tensor([3, 0, 2])
    assert torch.allclose(d(x, y), all_logits[torch.arange(3), y])


# ---- reference parameter counts -------------------------------------------------------------------------------------

def test_parameter_counts_reference() -> None:
    assert _millions(GuidingNetwork(k=10, style_dim=128)) == 9.30
    g128, g256 = Generator(128), Generator(256)
    assert (_millions(g128), g128.n_adain) == (27.33, 4992)
    assert (_millions(g128.encoder), _millions(g128.decoder), _millions(g128.mlp)) == (12.20, 13.75, 1.38)
    assert (_millions(g256), g256.n_adain) == (27.42, 5056)
    assert _millions(Discriminator(128, k=10)) == 70.94
    assert _millions(Discriminator(256, k=10)) == 70.98


# ---- AdaIN / style --------------------------------------------------------------------------------------------------

def test_adain_uses_style_and_is_deterministic() -> None:
    g = Generator(32, style_dim=16, width=8, mlp_width=32).eval()
    x = torch.randn(2, 3, 32, 32)
    s1, s2 = torch.randn(2, 16), torch.randn(2, 16)
    with torch.no_grad():
        a, b, c = g(x, s1), g(x, s1), g(x, s2)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


def test_adain_layout_bias_then_weight() -> None:
    g = Generator(32, style_dim=16, width=8, mlp_width=32)
    norm = g.decoder.blocks[0].norm1
    x = torch.randn(2, norm.num_features, 4, 4)
    c = norm.num_features
    params = torch.cat([torch.full((2, c), 3.0), torch.full((2, c), 2.0)], dim=1)  # bias 3, weight 2
    out = norm(x, params)
    assert torch.allclose(out.mean(dim=(2, 3)), torch.full((2, c), 3.0), atol=1e-5)
    assert torch.allclose(out.std(dim=(2, 3), unbiased=False), torch.full((2, c), 2.0), atol=1e-3)


def test_gradients_reach_mlp() -> None:
    g = Generator(32, style_dim=16, width=8, mlp_width=32)
    g(torch.randn(2, 3, 32, 32), torch.randn(2, 16)).square().mean().backward()
    for layer in (g.mlp[0], g.mlp[2], g.mlp[4]):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


# ---- losses ---------------------------------------------------------------------------------------------------------

def test_iic_loss_extremes() -> None:
    k = 5
    labels = torch.arange(k).repeat(4)  # balanced classes, same cluster in both views
    onehot_logits = 100.0 * torch.nn.functional.one_hot(labels, k).float()
    assert iic_loss(onehot_logits, onehot_logits).item() == pytest.approx(-math.log(k), abs=1e-4)
    uniform = torch.zeros(20, k)
    assert iic_loss(uniform, uniform).item() == pytest.approx(0.0, abs=1e-6)
    a = torch.randn(20, k, requires_grad=True)
    loss = iic_loss(a, torch.randn(20, k))
    loss.backward()
    assert -math.log(k) - 1e-5 <= loss.item() <= 1e-6 and a.grad is not None


@pytest.mark.parametrize("n_queue", [0, 7])
def test_moco_loss_equal_logits(n_queue: int) -> None:
    q = torch.zeros(4, 8, requires_grad=True)
    loss = moco_loss(q, torch.randn(4, 8), torch.randn(n_queue, 8), temperature=0.07)
    assert loss.item() == pytest.approx(math.log(1 + n_queue), abs=1e-5)
    loss.backward()
    assert q.grad is not None


def test_moco_loss_matches_cross_entropy_and_keys_are_constants() -> None:
    q = torch.randn(3, 4, requires_grad=True)
    k = torch.randn(3, 4, requires_grad=True)
    queue = torch.randn(5, 4)
    loss = moco_loss(q, k, queue, temperature=0.5)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], dim=1) / 0.5
    expected = torch.nn.functional.cross_entropy(logits, torch.zeros(3, dtype=torch.long))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert k.grad is None


def test_hinge_and_adv_losses() -> None:
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    assert d_hinge_loss(real, fake).item() == pytest.approx((0 + 0.5 + 2.0) / 3 + (0 + 1.0 + 2.0) / 3)
    assert g_adv_loss(real, fake).item() == pytest.approx(-real.mean().item() - fake.mean().item())


def test_r1_penalty_linear_discriminator() -> None:
    w = torch.randn(3 * 4 * 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    logits = x.flatten(1) @ w  # gradient of the sum wrt each sample is w
    r1 = r1_penalty(logits, x)
    assert r1.item() == pytest.approx(w.square().sum().item(), rel=1e-5)
    # create_graph=True: the penalty is differentiable wrt D's parameters.
    wp = w.clone().requires_grad_(True)
    r1_penalty(x.flatten(1) @ wp, x).backward()
    assert torch.allclose(wp.grad, 2 * wp.detach(), atol=1e-5)


# ---- queue ----------------------------------------------------------------------------------------------------------

def test_style_queue_fifo_and_state_dict() -> None:
    q = StyleQueue(size=5, dim=2, device="cpu")
    assert q.negatives().shape == (0, 2)
    rows = torch.arange(16, dtype=torch.float32).view(8, 2)  # row i = [2i, 2i+1]
    q.push(rows[:3])
    assert torch.equal(q.negatives(), rows[:3])
    q.push(rows[3:7])
    assert torch.equal(q.negatives(), rows[2:7])
    q.push(rows[7:])
    assert torch.equal(q.negatives(), rows[3:8])
    q.push(torch.arange(20, dtype=torch.float32).view(10, 2))  # larger than the queue
    assert torch.equal(q.negatives(), torch.arange(10, 20, dtype=torch.float32).view(5, 2))
    q.push(rows[:2])

    restored = StyleQueue(size=5, dim=2)
    restored.load_state_dict(q.state_dict())
    assert (restored.count, restored.ptr) == (q.count, q.ptr)
    assert torch.equal(restored.negatives(), q.negatives())
    restored.push(rows[2:3])
    q.push(rows[2:3])
    assert torch.equal(restored.negatives(), q.negatives())


# ---- bf16 autocast --------------------------------------------------------------------------------------------------

def test_bf16_autocast_forward_backward_and_float32_losses() -> None:
    e = GuidingNetwork(k=4, style_dim=16, width=8)
    g = Generator(32, style_dim=16, width=8, mlp_width=32)
    d = Discriminator(32, k=4, width=8, max_width=32)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    x_plus = x.flip(-1)
    queue = StyleQueue(16, 16)
    queue.push(torch.randn(6, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, style = e(x)
        logits_plus, key = e(x_plus)
        y = logits.argmax(1)
        real = x.clone().requires_grad_(True)
        real_logits = d(real, y)
        fake = g(x, style)
        fake_logits = d(fake, y)
        losses = [
            iic_loss(logits, logits_plus),
            moco_loss(style, key, queue.negatives(), 0.07),
            d_hinge_loss(real_logits, fake_logits),
            g_adv_loss(fake_logits, d(g(x, key), y)),
            r1_penalty(real_logits, real),
        ]
    for loss in losses:
        assert loss.dtype == torch.float32 and torch.isfinite(loss), loss
    # Autocast is off inside the losses, so the IIC value matches a float32 computation on the same logits.
    assert losses[0].item() == pytest.approx(iic_loss(logits.float(), logits_plus.float()).item(), abs=1e-6)
    torch.stack(losses).sum().backward()
    assert g.mlp[0].weight.grad is not None and e.cont.weight.grad is not None
    assert fake.shape == x.shape
    queue.push(key)
    assert len(queue) == 10
