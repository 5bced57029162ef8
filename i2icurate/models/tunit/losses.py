"""TUNIT losses: IIC mutual information, MoCo style contrastive, hinge GAN and R1. All computed in float32."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from i2icurate.models.tunit.queue import StyleQueue

__all__ = ["StyleQueue", "d_hinge_loss", "g_adv_loss", "iic_loss", "moco_loss", "r1_penalty"]


def _no_autocast(t: Tensor) -> torch.autocast:
    """Disable autocast on ``t``'s device: casting inputs is not enough, autocast would run matmuls in bf16."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def iic_loss(logits_a: Tensor, logits_b: Tensor, eps: float = 1e-10,
             joint_reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Negative mutual information between the cluster assignments of two views (minimum ``-ln k``).

    Joint ``P = sum_b p_b p+_b^T``, symmetrised and normalised; P and its marginals are clamped at ``eps``.
    ``joint_reduce`` (distributed training) sums the unnormalised joint over processes, so the loss is that of the
    whole batch rather than of this process's share.
    """
    with _no_autocast(logits_a):
        p = F.softmax(logits_a.float(), dim=1)
        p_plus = F.softmax(logits_b.float(), dim=1)
        joint = p.t() @ p_plus
        if joint_reduce is not None:
            joint = joint_reduce(joint)
        joint = (joint + joint.t()) / 2
        joint = joint / joint.sum()
        p_i = joint.sum(dim=1, keepdim=True).expand_as(joint).clamp(min=eps)
        p_j = joint.sum(dim=0, keepdim=True).expand_as(joint).clamp(min=eps)
        joint = joint.clamp(min=eps)
        return -(joint * (joint.log() - p_i.log() - p_j.log())).sum()


def moco_loss(query: Tensor, key: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """InfoNCE with logits ``[q.k, q.queue_j] / T`` and target 0; no L2 normalisation.

    ``key`` (B x D) and ``queue`` (Q x D, Q may be 0) are treated as constants.
    """
    with _no_autocast(query):
        q = query.float()
        k = key.detach().float()
        neg = queue.detach().to(device=q.device, dtype=torch.float32)
        l_pos = (q * k).sum(dim=1, keepdim=True)
        l_neg = q @ neg.t()
        logits = torch.cat([l_pos, l_neg], dim=1) / temperature
        target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
        return F.cross_entropy(logits, target)


def d_hinge_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss: ``mean relu(1 - real) + mean relu(1 + fake)``."""
    with _no_autocast(real_logits):
        return F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean()


def g_adv_loss(*fake_logits: Tensor) -> Tensor:
    """Generator adversarial loss: the sum over the arguments of ``-mean(logits)``."""
    if not fake_logits:
        raise ValueError("g_adv_loss needs at least one tensor of logits")
    with _no_autocast(fake_logits[0]):
        return torch.stack([-f.float().mean() for f in fake_logits]).sum()


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """R1: ``(1/B) * sum_b ||d(sum real_logits) / d real_images_b||^2``, differentiable (no 1/2 factor)."""
    with _no_autocast(real_logits):
        (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
        return grad.float().pow(2).reshape(grad.shape[0], -1).sum(dim=1).mean()
