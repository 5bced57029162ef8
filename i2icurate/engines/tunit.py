"""TUNIT training: the guiding network, generator and discriminator updated as in the paper, one step at a time.

Differences from the reference implementation, all of which keep the losses and update order:
- the guiding network returns both heads from one pass, and x and x+ go through it as one batch;
- the content code and the translated/reconstructed images are computed once per step and shared by the
  discriminator step (detached) and the generator step (the generator and guiding network do not change in between);
- the discriminator is frozen (requires_grad off) during the generator step instead of collecting unused gradients;
- the queue and every random generator are part of the checkpoint, so resume is exact.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.utils import make_grid

from i2icurate.data.augment import positive_pair
from i2icurate.data.sampler import BatchSource, EpochSampler, MixedSampler
from i2icurate.engines.checkpoint import rng_state, set_rng_state
from i2icurate.models.tunit import Discriminator, Generator, GuidingNetwork
from i2icurate.models.tunit.losses import StyleQueue, d_hinge_loss, g_adv_loss, iic_loss, moco_loss, r1_penalty


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default; None means full fp32."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def build_networks(cfg: dict[str, Any]) -> dict[str, nn.Module]:
    """The three TUNIT networks for a resolved discover config."""
    return {
        "E": GuidingNetwork(cfg["k"], cfg["style_dim"], cfg["e_width"]),
        "G": Generator(cfg["img_size"], cfg["style_dim"], cfg["g_width"], cfg["mlp_width"]),
        "D": Discriminator(cfg["img_size"], cfg["k"], cfg["d_width"], cfg["d_max_width"]),
    }


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers (BN statistics) are copied."""
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


def phase_steps(cfg: dict[str, Any]) -> tuple[int, int]:
    """(first GAN iteration, first generator-EMA iteration), scaled to the run's number of iterations."""
    warmup = int(round(cfg["warmup_frac"] * cfg["iters"]))
    return warmup, min(cfg["iters"], warmup + int(round(cfg["ema_g_delay"] * cfg["iters"])))


def make_sampler(n: int, batch_size: int, seed: int, labels: np.ndarray | None,
                 pool: np.ndarray | None) -> EpochSampler | MixedSampler:
    """Plain epochs over `pool`, or, with labels, a quarter of every batch (at least one) from the labelled images."""
    pool = np.arange(n) if pool is None else np.asarray(pool)
    if labels is None or not (labels[pool] >= 0).any():
        return EpochSampler(n, batch_size, seed, pool=pool)
    labelled = pool[labels[pool] >= 0]
    n_labelled = min(len(labelled), max(1, batch_size // 4))
    return MixedSampler(pool, labelled, batch_size, n_labelled, seed)


class TunitTrainer:
    """Holds the networks, their EMA copies, optimisers, queue and generators of one discover run."""

    def __init__(self, cfg: dict[str, Any], images: np.ndarray, labels: np.ndarray | None = None,
                 pool: np.ndarray | None = None) -> None:
        """`images`: (N, S, S, 3) uint8 cache; `labels`: optional (N,) int64, -1 = unlabelled (semi-supervised);
        `pool`: the indices to train on (default all; a reviewer's excluded images are left out)."""
        self.cfg = cfg
        self.device = resolve_device(cfg["device"])
        self.amp_dtype = autocast_dtype(cfg["precision"], self.device)
        torch.manual_seed(cfg["seed"])
        nets = build_networks(cfg)
        self.E, self.G, self.D = (nets[n].to(self.device) for n in ("E", "G", "D"))
        self.E_ema, self.G_ema = copy.deepcopy(self.E), copy.deepcopy(self.G)
        for net in (self.E_ema, self.G_ema):
            net.requires_grad_(False)
        self.opt_e = torch.optim.Adam(self.E.parameters(), lr=cfg["lr_e"], weight_decay=cfg["wd_e"])
        self.opt_g = torch.optim.RMSprop(self.G.parameters(), lr=cfg["lr_g"], weight_decay=cfg["wd_gd"])
        self.opt_d = torch.optim.RMSprop(self.D.parameters(), lr=cfg["lr_d"], weight_decay=cfg["wd_gd"])
        self.queue = StyleQueue(cfg["queue_size"], cfg["style_dim"], self.device)
        self.sampler = make_sampler(len(images), cfg["batch_size"], cfg["seed"], labels, pool)
        self.batches = BatchSource(images, self.sampler, self.device)
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        self.aug_gen = torch.Generator(device=self.device).manual_seed(cfg["seed"] + 1)
        self.perm_gen = torch.Generator(device=self.device).manual_seed(cfg["seed"] + 2)
        self.gan_start, self.ema_g_start = phase_steps(cfg)
        self.step_count = 0
        self._preview: torch.Tensor | None = None

    # ------------------------------------------------------------------ one iteration
    def _autocast(self):
        enabled = self.amp_dtype is not None
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=enabled)

    def _supervised_ce(self, logits: torch.Tensor, idx: np.ndarray) -> torch.Tensor | None:
        """Cross-entropy on the class head for the labelled images of the batch (semi-supervised runs)."""
        if self.labels is None:
            return None
        y = self.labels[torch.from_numpy(idx)].to(self.device)
        known = y >= 0
        if not bool(known.any()):
            return None
        b = len(idx)
        both = torch.cat([logits[:b][known], logits[b:][known]]).float()
        return nn.functional.cross_entropy(both, torch.cat([y[known], y[known]]))

    def step(self, i: int) -> dict[str, float]:
        """One TUNIT iteration: E alone during warm-up, then E, D, and G with E."""
        cfg = self.cfg
        idx, batch = self.batches.next()
        x, x_aug = positive_pair(batch, self.aug_gen)
        b = x.shape[0]
        gan = i >= self.gan_start
        out: dict[str, float] = {}

        # 1. guiding network: IIC on the class head, contrastive on the style head (keys from the EMA copy)
        with self._autocast():
            logits, styles = self.E(torch.cat([x, x_aug]))
            with torch.no_grad():
                _, keys = self.E_ema(x_aug)
        keys = keys.float()
        loss_iic = iic_loss(logits[:b], logits[b:])
        loss_moco = moco_loss(styles[:b], keys, self.queue.negatives(), cfg["temperature"])
        loss_e = cfg["w_moco"] * loss_moco + cfg["w_iic"] * loss_iic
        loss_sup = self._supervised_ce(logits, idx)
        if loss_sup is not None:
            loss_e = loss_e + cfg["w_sup"] * cfg["w_iic"] * loss_sup
            out["loss/sup_ce"] = loss_sup.item()
        if gan:
            loss_e = loss_e * cfg["e_scale_gan"]
        self.opt_e.zero_grad(set_to_none=True)
        loss_e.backward()
        self.opt_e.step()
        out.update({"loss/iic": loss_iic.item(), "loss/moco": loss_moco.item()})

        if gan:
            out.update(self._gan_step(x, idx, b))
        self.queue.push(keys.detach())
        ema_update(self.E_ema, self.E, cfg["ema_beta"])
        if i == self.ema_g_start:
            self.G_ema.load_state_dict(self.G.state_dict())
        elif i > self.ema_g_start:
            ema_update(self.G_ema, self.G, cfg["ema_beta"])
        return out

    def _pseudo_labels(self, logits: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """argmax of the class head; human labels win where a semi-supervised run has them."""
        y = logits.detach().argmax(1)
        if self.labels is not None:
            known = self.labels[torch.from_numpy(idx)].to(self.device)
            y = torch.where(known >= 0, known, y)
        return y

    def _gan_step(self, x: torch.Tensor, idx: np.ndarray, b: int) -> dict[str, float]:
        cfg = self.cfg
        perm = torch.randperm(b, generator=self.perm_gen, device=self.device)
        with self._autocast():
            logits, s_src = self.E(x)
            y = self._pseudo_labels(logits, idx)
            s_ref, x_ref, y_ref = s_src[perm], x[perm], y[perm]
            content = self.G.encode(x)
            fake, rec = self.G.decode(torch.cat([content, content]), torch.cat([s_ref, s_src])).chunk(2)

        # 2. discriminator: hinge on real references vs. translations, R1 on the reals
        self.D.requires_grad_(True)
        real = x_ref.detach().requires_grad_(True)
        with self._autocast():
            d_real = self.D(real, y_ref)
            d_fake = self.D(fake.detach(), y_ref)
        loss_d_adv = d_hinge_loss(d_real, d_fake)
        loss_r1 = r1_penalty(d_real, real)
        self.opt_d.zero_grad(set_to_none=True)
        (loss_d_adv + cfg["w_r1"] * loss_r1).backward()
        self.opt_d.step()

        # 3. generator and guiding network: adversarial on translation and reconstruction, L1, style contrastive
        self.D.requires_grad_(False)
        with self._autocast():
            d_out = self.D(torch.cat([fake, rec]), torch.cat([y_ref, y]))
            _, s_fake = self.E(fake)
            with torch.no_grad():
                _, key_ref = self.E_ema(x_ref)
        loss_adv = g_adv_loss(d_out[:b], d_out[b:])
        loss_rec = (rec.float() - x).abs().mean()
        loss_sty = moco_loss(s_fake, key_ref.float(), self.queue.negatives(), cfg["temperature"])
        loss_g = cfg["w_adv"] * loss_adv + cfg["w_rec"] * loss_rec + cfg["w_sty"] * loss_sty
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_e.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.opt_e.step()
        return {
            "loss/d_adv": loss_d_adv.item(),
            "loss/r1": loss_r1.item(),
            "loss/g_adv": loss_adv.item(),
            "loss/rec": loss_rec.item(),
            "loss/g_style": loss_sty.item(),
        }

    # ------------------------------------------------------------------ pictures and state
    @torch.no_grad()
    def samples(self) -> dict[str, torch.Tensor]:
        """A fixed preview batch: sources, their reconstructions and translations to a rolled reference style."""
        if self.step_count < self.gan_start:
            return {}
        if self._preview is None:
            n = min(8, len(self.batches.images))
            rows = np.linspace(0, len(self.batches.images) - 1, n).astype(int)
            u8 = torch.from_numpy(np.array(self.batches.images[rows])).to(self.device)
            self._preview = u8.permute(0, 3, 1, 2).float() / 127.5 - 1
        x = self._preview
        self.E_ema.eval(), self.G_ema.eval()
        _, s = self.E_ema(x)
        content = self.G_ema.encode(x)
        rec = self.G_ema.decode(content, s)
        fake = self.G_ema.decode(content, s.roll(1, 0))
        self.E_ema.train(), self.G_ema.train()
        grid = make_grid(torch.cat([x, rec.float(), x.roll(1, 0), fake.float()]), nrow=len(x), normalize=True,
                         value_range=(-1, 1))
        return {"samples/source_rec_reference_translation": grid}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: networks, EMA copies, optimisers, queue, samplers, RNGs, step."""
        return {
            "step": self.step_count,
            "config": self.cfg,
            "models": {n: getattr(self, n).state_dict() for n in ("E", "G", "D", "E_ema", "G_ema")},
            "optimizers": {n: getattr(self, n).state_dict() for n in ("opt_e", "opt_g", "opt_d")},
            "queue": self.queue.state_dict(),
            "sampler": self.sampler.state_dict(),
            "generators": {"aug": self.aug_gen.get_state(), "perm": self.perm_gen.get_state()},
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict` (tensors may come from the CPU)."""
        for name, weights in state["models"].items():
            getattr(self, name).load_state_dict(weights)
        for name, opt_state in state["optimizers"].items():
            getattr(self, name).load_state_dict(opt_state)
        self.queue.load_state_dict(state["queue"])
        self.sampler.load_state_dict(state["sampler"])
        self.aug_gen.set_state(state["generators"]["aug"])
        self.perm_gen.set_state(state["generators"]["perm"])
        set_rng_state(state["rng"])
        self.step_count = int(state["step"])
