"""CUT and SRUNIT losses: LSGAN, PatchNCE, and the semantic-robustness (SR) loss. All computed in float32.

SR loss (SRUNIT, ICCV 2021): perturb the source tap f = E_l(x) at every spatial position, run the rest of the
generator, re-encode the result to the same tap, and penalise the distance to f through the same head H_l at the
same sampled positions, divided by the perturbation size. Our deliberate changes to the reference:
- "fixed" mode (default): the perturbation is a unit-L2 Gaussian direction (over channels, per position) times a
  magnitude m ~ U(1e-7, reg_noise) drawn per position, and the loss divides by that same m. The reference
  (`faithful=True`) always applies magnitude reg_noise and divides by an independent U(1e-7, reg_noise) draw.
  Note that the distance is to the *source* feature, not to the unperturbed re-encoding, so it does not shrink with
  m: in both modes the 1/m weighting keeps the term heavy-tailed (per-position weights up to 1/1e-7).
- v1 (F frozen for the SR term) is one backward pass with F's weights detached in the SR projection, which gives
  the same gradients as the reference's two backward passes.
- the SR term is off for the first `inact_frac` of iterations, during which the trainer still updates G and F with
  the CUT losses (the reference updates neither then); see `i2icurate/translators/srunit.py`.
- Under bf16 autocast a perturbation of ~1e-3 is below the resolution of activations of order 1; the rounding of
  f + eps then acts as part of the perturbation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from i2icurate.models.cut.networks import Generator, PatchSampleF

NEG_FILL = -10.0  # the reference fills the self-similarity diagonal of the negatives with -10 before dividing by tau


def _no_autocast(t: Tensor) -> torch.autocast:
    """Disable autocast: casting inputs is not enough, autocast would still run matmuls in bf16."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def lsgan_d_loss(pred_real: Tensor, pred_fake: Tensor) -> Tensor:
    """0.5 * (MSE(D(real), 1) + MSE(D(fake), 0))."""
    with _no_autocast(pred_real):
        real, fake = pred_real.float(), pred_fake.float()
        return 0.5 * (F.mse_loss(real, torch.ones_like(real)) + F.mse_loss(fake, torch.zeros_like(fake)))


def lsgan_g_loss(pred_fake: Tensor) -> Tensor:
    """MSE(D(G(x)), 1)."""
    with _no_autocast(pred_fake):
        fake = pred_fake.float()
        return F.mse_loss(fake, torch.ones_like(fake))


def patch_nce_loss(query: Tensor, key: Tensor, n_images: int, tau: float = 0.07) -> Tensor:
    """Per-patch PatchNCE losses (n_images * S,) for embeddings (n_images * S, D), image-major.

    Logits of query i: [q_i.k_i, q_i.k_j for every position j of the same image] / tau, with the j = i entry set to
    -10 / tau; cross-entropy with the positive at index 0. Keys are treated as constants.
    """
    with _no_autocast(query):
        q, k = query.float(), key.detach().float()
        dim = q.shape[1]
        pos = (q * k).sum(1, keepdim=True)
        qb, kb = q.view(n_images, -1, dim), k.view(n_images, -1, dim)
        s = qb.shape[1]
        neg = torch.bmm(qb, kb.transpose(1, 2))
        neg = neg.masked_fill(torch.eye(s, dtype=torch.bool, device=q.device), NEG_FILL).view(-1, s)
        logits = torch.cat([pos, neg], dim=1) / tau
        target = torch.zeros(len(logits), dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, target, reduction="none")


def perturb(feat: Tensor, reg_noise: float, gen: torch.Generator, faithful: bool = False) -> tuple[Tensor, Tensor]:
    """(feat + eps, m): eps is a unit-L2 Gaussian direction over channels at each position times a magnitude.

    m (B, H * W) is the loss denominator per position, drawn U(1e-7, reg_noise). Fixed mode: ||eps|| = m at every
    position. Faithful mode: ||eps|| = reg_noise and m is an independent draw (the reference behaviour).
    """
    b, _, h, w = feat.shape
    device = feat.device
    direction = torch.randn(feat.shape, generator=gen, device=device)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    m = torch.rand(b, 1, h, w, generator=gen, device=device) * (reg_noise - 1e-7) + 1e-7
    size = torch.full_like(m, reg_noise) if faithful else m
    return feat + direction * size, m.flatten(1)


def sr_distance(g_emb: Tensor, f_emb: Tensor, m: Tensor) -> Tensor:
    """mean_i ||g_i - f_i||_2 / m_i, with 1e-12 inside the square root (the reference's)."""
    with _no_autocast(g_emb):
        dist = ((g_emb.float() - f_emb.float()).pow(2).sum(1) + 1e-12).sqrt()
        return (dist / m.float()).mean()


def sr_loss(
    gen_net: Generator,
    head: PatchSampleF,
    feat: Tensor,
    layer: int,
    index: int,
    ids: Tensor,
    reg_noise: float,
    gen: torch.Generator,
    faithful: bool = False,
    freeze_head: bool = False,
) -> Tensor:
    """SRUNIT's L_SR for source tap `feat` = output of generator module `layer` (tap number `index`).

    x~ = G_{layer+1..}(feat + eps); g = E_layer(x~); loss = mean ||H(g) - H(feat)|| / m at positions `ids`.
    `feat` is not detached: the gradient reaches the encoder through it. `freeze_head` keeps H's weights out (v1).
    Runs under the caller's autocast; the distance is float32.
    """
    perturbed, m = perturb(feat, reg_noise, gen, faithful)
    out = gen_net.decode_from(perturbed, layer)
    g = gen_net.encode(out, [layer])[0]
    emb = head.project(index, torch.cat([g, feat.to(g.dtype)]), ids, frozen=freeze_head)
    g_emb, f_emb = emb.chunk(2)
    return sr_distance(g_emb, f_emb, m.index_select(1, ids).reshape(-1))
