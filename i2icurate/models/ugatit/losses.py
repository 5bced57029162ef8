"""U-GAT-IT losses: least-squares GAN on the patch and CAM outputs of each discriminator, BCE on the generator's CAM.

Everything is computed in float32 (the networks may run under bf16 autocast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def lsgan(pred: Tensor, target: float) -> Tensor:
    """Mean squared distance of `pred` to the constant `target` (1 = real, 0 = fake)."""
    return (pred.float() - target).pow(2).mean()


def d_loss(real: tuple[Tensor, Tensor], fake: tuple[Tensor, Tensor]) -> Tensor:
    """One discriminator's LSGAN loss on (patch logits, CAM logit) of real and (detached) fake images."""
    return lsgan(real[0], 1.0) + lsgan(fake[0], 0.0) + lsgan(real[1], 1.0) + lsgan(fake[1], 0.0)


def g_adv_loss(fake: tuple[Tensor, Tensor]) -> Tensor:
    """The generator's LSGAN loss against one discriminator's (patch logits, CAM logit) of its translations."""
    return lsgan(fake[0], 1.0) + lsgan(fake[1], 1.0)


def cam_loss(source_logit: Tensor, target_logit: Tensor) -> Tensor:
    """Generator CAM loss: its CAM logit should say 1 on source-domain inputs and 0 on its own target domain's."""
    source_logit, target_logit = source_logit.float(), target_logit.float()
    return F.binary_cross_entropy_with_logits(source_logit, torch.ones_like(source_logit)) + \
        F.binary_cross_entropy_with_logits(target_logit, torch.zeros_like(target_logit))


def l1(x: Tensor, y: Tensor) -> Tensor:
    """Mean absolute error in float32 (cycle and identity losses)."""
    return (x.float() - y.float()).abs().mean()
