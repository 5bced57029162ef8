"""TUNIT training: the guiding network, generator and discriminator updated as in the paper, one step at a time.

Differences from the reference implementation, all of which keep the losses and update order:
- the guiding network returns both heads from one pass, and x and x+ go through it as one batch;
- the content code and the translated/reconstructed images are computed once per step and shared by the
  discriminator step (detached) and the generator step (the generator and guiding network do not change in between);
- the discriminator is frozen (requires_grad off) during the generator step instead of collecting unused gradients;
- the queue and every random generator are part of the checkpoint, so resume is exact.

Speed (`SpeedSettings`, all optional and loss-preserving): channels-last tensors, fused/multi-tensor optimiser
steps, torch.compile of E and G, lazy R1. Under torchrun the networks are wrapped in DistributedDataParallel, the
global batch is split over ranks, IIC's joint distribution is summed over ranks and the MoCo queue receives every
rank's keys, so each rank optimises the loss of the whole batch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.utils import make_grid

from i2icurate.config import CONTENT, DISCOVER, STYLE, run_domains
from i2icurate.data.augment import positive_pair, random_flip, to_signed, to_unit
from i2icurate.data.sampler import BatchSource, EpochSampler, MixedSampler
from i2icurate.engines.checkpoint import rng_state, set_rng_state
from i2icurate.engines.distributed import SINGLE, Dist, all_gather_rows, all_reduce_sum, gather_objects
from i2icurate.engines.heads import HeadPhase
from i2icurate.models.backbones import SCRATCH, is_pretrained, load_backbone
from i2icurate.models.tunit import Discriminator, Generator, GuidingNetwork
from i2icurate.models.tunit.losses import StyleQueue, d_hinge_loss, g_adv_loss, iic_loss, moco_loss, r1_penalty
from i2icurate.models.tunit.pretrained_guiding import PretrainedGuidingNetwork
from i2icurate.models.tunit.style_guiding import StyleGuidingNetwork
from i2icurate.plan import warmup_iterations


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


@dataclass(frozen=True)
class SpeedSettings:
    """How the step runs on the hardware; resolved from the run's options and device."""

    channels_last: bool = False
    fused_optim: bool = False
    compile: bool = False
    r1_every: int = 1


def speed_settings(cfg: dict[str, Any], device: torch.device) -> SpeedSettings:
    """Resolve the 'auto' speed options for `device` (runs made before these options existed get the defaults)."""
    cuda = device.type == "cuda"

    def on(name: str, auto: bool) -> bool:
        value = cfg.get(name, "auto")
        return auto if value == "auto" else value == "on"

    return SpeedSettings(
        channels_last=on("channels_last", cuda),
        fused_optim=on("fused_optim", cuda),
        compile=on("compile", False),
        r1_every=int(cfg.get("r1_every", 1)),
    )


# --domains: what the class heads of a pretrained trunk read (models/tunit/pretrained_guiding.py, style_guiding.py)
GUIDING_BY_DOMAINS: dict[str, type[PretrainedGuidingNetwork]] = {
    CONTENT: PretrainedGuidingNetwork,
    STYLE: StyleGuidingNetwork,
}


def uses_pretrained_trunk(cfg: dict[str, Any]) -> bool:
    """Whether the run's guiding network is a pretrained trunk with heads (runs made before --backbone: no)."""
    return is_pretrained(cfg.get("backbone", SCRATCH))


def build_guiding(cfg: dict[str, Any]) -> nn.Module:
    """The guiding network E of a resolved discover config: the from-scratch VGG-11 or a pretrained trunk."""
    if not uses_pretrained_trunk(cfg):
        return GuidingNetwork(cfg["k"], cfg["style_dim"], cfg["e_width"])
    trunk = load_backbone(cfg["backbone"], cfg["backbone_size"])
    network = GUIDING_BY_DOMAINS[run_domains(cfg)]
    options = {name: cfg.get(name, DISCOVER[name].default) for name in network.OPTIONS}
    return network(trunk, cfg["k"], cfg["style_dim"], cfg["heads"], cfg["pca_dim"], cfg["style_weight"], **options)


def build_networks(cfg: dict[str, Any]) -> dict[str, nn.Module]:
    """The three TUNIT networks for a resolved discover config."""
    return {
        "E": build_guiding(cfg),
        "G": Generator(cfg["img_size"], cfg["style_dim"], cfg["g_width"], cfg["mlp_width"]),
        "D": Discriminator(cfg["img_size"], cfg["k"], cfg["d_width"], cfg["d_max_width"]),
    }


def warmed_ema_decay(decay: float, step: int) -> float:
    """EMA decay at iteration `step`, warmed up as min(decay, (1 + step) / (10 + step)) so that a short run's average
    is not dominated by its initial weights (the translators' generator copies)."""
    return min(decay, (1 + step) / (10 + step))


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
    warmup = warmup_iterations(cfg)
    return warmup, min(cfg["iters"], warmup + int(round(cfg["ema_g_delay"] * cfg["iters"])))


def _mask(n: int, pool: np.ndarray) -> torch.Tensor:
    """(n,) bool: True for the indices in `pool`."""
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.as_tensor(pool, dtype=torch.long)] = True
    return keep


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
                 pool: np.ndarray | None = None, dist: Dist = SINGLE, device: torch.device | None = None,
                 anchors: np.ndarray | None = None) -> None:
        """`images`: (N, S, S, 3) uint8 cache; `labels`: optional (N,) int64, -1 = unlabelled (semi-supervised);
        `anchors`: optional (N,) int64, the parent run's cluster of images a review left untouched (-1 = free);
        `pool`: the indices to train on (default all; a reviewer's excluded images are left out); `dist`: this
        process's rank under torchrun (the batch size is the global one and must divide by the world size)."""
        self.cfg, self.dist = cfg, dist
        self.device = device or resolve_device(cfg["device"])
        self.amp_dtype = autocast_dtype(cfg["precision"], self.device)
        self.speed = speed_settings(cfg, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if cfg["batch_size"] % dist.world:
            raise ValueError(f"batch size {cfg['batch_size']} does not divide over {dist.world} processes")
        torch.manual_seed(cfg["seed"])
        nets = build_networks(cfg)
        fmt = torch.channels_last if self.speed.channels_last else torch.preserve_format
        self.E, self.G, self.D = (nets[n].to(self.device, memory_format=fmt) for n in ("E", "G", "D"))
        self.E_ema, self.G_ema = copy.deepcopy(self.E), copy.deepcopy(self.G)
        for net in (self.E_ema, self.G_ema):
            net.requires_grad_(False)
        fused = {"fused": True} if self.speed.fused_optim and self.device.type == "cuda" else {}
        foreach = {"foreach": True} if self.speed.fused_optim else {}
        self.pretrained = uses_pretrained_trunk(cfg)
        self.opt_e = torch.optim.Adam(self._guiding_param_groups(), lr=cfg["lr_e"], weight_decay=cfg["wd_e"], **fused)
        self.opt_g = torch.optim.RMSprop(self.G.parameters(), lr=cfg["lr_g"], weight_decay=cfg["wd_gd"], **foreach)
        self.opt_d = torch.optim.RMSprop(self.D.parameters(), lr=cfg["lr_d"], weight_decay=cfg["wd_gd"], **foreach)
        self._wrap_for_training()
        self.queue = StyleQueue(cfg["queue_size"], cfg["style_dim"], self.device)
        self.sampler = make_sampler(len(images), cfg["batch_size"], cfg["seed"], labels, pool)
        self.images = images
        self.batches = BatchSource(images, self.sampler, self.device, shard=(dist.rank, dist.world))
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        self.anchors = None if anchors is None else torch.as_tensor(anchors, dtype=torch.long)
        # each rank augments and permutes its own share of the batch with its own streams
        offset = dist.seed_offset
        self.aug_gen = torch.Generator(device=self.device).manual_seed(cfg["seed"] + 1 + offset)
        self.perm_gen = torch.Generator(device=self.device).manual_seed(cfg["seed"] + 2 + offset)
        self.joint_reduce = partial(all_reduce_sum, dist) if dist.enabled else None
        self.gan_start, self.ema_g_start = phase_steps(cfg)
        self.step_count = 0
        self._preview: torch.Tensor | None = None
        self.head_phase: HeadPhase | None = None
        self.keep = None if pool is None or len(pool) == len(images) else _mask(len(images), pool)
        if self.pretrained:  # the heads train on cached features, in batches of their own
            # drawn over the whole folder, as a run without exclusions draws them; excluded images are masked out of
            # the losses, so an exclusion changes nothing else (same batches, same random draws)
            self.head_sampler = make_sampler(len(images), cfg["head_batch"], cfg["seed"] + 3, labels, None)
            self.head_gen = torch.Generator(device=self.device).manual_seed(cfg["seed"] + 4)

    def _guiding_param_groups(self) -> list[dict[str, Any]]:
        """E's trainable parameters; on a pretrained trunk the class heads get their own rate and no decay."""
        if not self.pretrained:
            return [{"params": list(self.E.parameters())}]
        return [{"params": list(self.E.heads.parameters()), "lr": self.cfg["lr_heads"], "weight_decay": 0.0},
                {"params": list(self.E.cont.parameters())}]

    def attach_features(self, content: np.ndarray, style: np.ndarray, fresh: bool, inherited: bool = False,
                        new_cluster: int | None = None,
                        crop_moments: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """Give a pretrained-trunk run its cached trunk features (views, N, dim). `fresh`: no weights were loaded,
        so the descriptor is fitted to this folder and every head starts from its own k-means, or, where the labels
        name an image of every cluster, from their logistic regression (`HeadPhase.start_heads`). `inherited`: the
        weights are another run's (--from), so every head starts as its best head: they all speak the parent's
        cluster numbers, which the labels and anchors of a review use. `new_cluster`: the cluster the parent did
        not have; every head's row for it starts at the mean descriptor of the images labelled with it. `crop_moments`:
        a style trunk's, stored with the features (`HeadPhase`)."""
        self.head_phase = HeadPhase(self.E, content, style, self.cfg, self.device, keep=self.keep, images=self.images,
                                    crop_moments=crop_moments)
        if inherited:
            best = self.E.heads[int(self.E.best)].state_dict()
            for net in (self.E, self.E_ema):
                for head in net.heads:
                    head.load_state_dict(best)
        if fresh:
            self.head_phase.fit(self.labels)
            self.head_phase.choose_best(self.E)
            self.E_ema.load_state_dict(self.E.state_dict())
        else:
            self.head_phase.prepare()
        if new_cluster is not None:
            self.head_phase.start_cluster(new_cluster, self.labels == new_cluster)
            for ema, head in zip(self.E_ema.heads, self.E.heads, strict=True):
                ema.load_state_dict(head.state_dict())

    def _wrap_for_training(self) -> None:
        """The callables the step trains through: DDP wrappers and compiled modules around the same parameters.

        The raw modules keep the state (checkpoints, EMA, previews). E runs under DDP with find_unused_parameters
        because the generator step's backward never reaches its class head; the frozen discriminator of the
        generator step runs outside DDP, which would otherwise wait for gradients that never come.
        """
        self.run_E: nn.Module = self.E
        self.run_G: nn.Module = self.G
        self.run_D: nn.Module = self.D
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            if self.device.type == "cuda":
                self.E = nn.SyncBatchNorm.convert_sync_batchnorm(self.E)  # statistics of the whole batch
            self.run_E = DDP(self.E, device_ids=ids, find_unused_parameters=True)
            self.run_G = DDP(self.G, device_ids=ids)
            self.run_D = DDP(self.D, device_ids=ids)
        self.run_D_frozen: nn.Module = self.D
        if self.speed.compile:
            self.run_E = torch.compile(self.run_E)
            self.run_G = torch.compile(self.run_G)
            self.run_D_frozen = torch.compile(self.D)

    # ------------------------------------------------------------------ one iteration
    def _autocast(self):
        enabled = self.amp_dtype is not None
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=enabled)

    def _supervised_ce(self, logits: torch.Tensor, idx: np.ndarray,
                       targets: torch.Tensor | None) -> torch.Tensor | None:
        """Cross-entropy on the class head for the images of the batch with a target (>= 0): a reviewer's labels,
        or the anchors of a retrain."""
        if targets is None:
            return None
        y = targets[torch.from_numpy(idx)].to(self.device)
        known = y >= 0
        if not bool(known.any()):
            return None
        b = len(idx)
        both = torch.cat([logits[:b][known], logits[b:][known]]).float()
        return nn.functional.cross_entropy(both, torch.cat([y[known], y[known]]))

    def step(self, i: int) -> dict[str, float]:
        """One TUNIT iteration: E alone during warm-up, then E, D, and G with E (on a pretrained trunk: E's heads
        on cached features during warm-up, then D, and G with E's style head)."""
        if self.pretrained:
            return self._pretrained_step(i)
        cfg = self.cfg
        idx, batch = self.batches.next()
        x, x_aug = positive_pair(batch, self.aug_gen)
        if self.speed.channels_last:
            x, x_aug = (t.contiguous(memory_format=torch.channels_last) for t in (x, x_aug))
        b = x.shape[0]
        gan = i >= self.gan_start
        out: dict[str, float] = {}

        # 1. guiding network: IIC on the class head, contrastive on the style head (keys from the EMA copy)
        with self._autocast():
            logits, styles = self.run_E(torch.cat([x, x_aug]))
            with torch.no_grad():
                _, keys = self.E_ema(x_aug)
        keys = keys.float()
        loss_iic = iic_loss(logits[:b], logits[b:], joint_reduce=self.joint_reduce)
        loss_moco = moco_loss(styles[:b], keys, self.queue.negatives(), cfg["temperature"])
        loss_e = cfg["w_moco"] * loss_moco + cfg["w_iic"] * loss_iic
        loss_sup = self._supervised_ce(logits, idx, self.labels)
        if loss_sup is not None:
            loss_e = loss_e + cfg["w_sup"] * cfg["w_iic"] * loss_sup
            out["loss/sup_ce"] = loss_sup.item()
        loss_anchor = self._supervised_ce(logits, idx, self.anchors)
        if loss_anchor is not None:
            loss_e = loss_e + cfg.get("w_anchor", 1.0) * cfg["w_iic"] * loss_anchor
            out["loss/anchor_ce"] = loss_anchor.item()
        if gan:
            loss_e = loss_e * cfg["e_scale_gan"]
        self.opt_e.zero_grad(set_to_none=True)
        loss_e.backward()
        self.opt_e.step()
        out.update({"loss/iic": loss_iic.item(), "loss/moco": loss_moco.item()})

        if gan:
            out.update(self._gan_step(i, x, idx, b))
        self.queue.push(all_gather_rows(self.dist, keys.detach()))
        ema_update(self.E_ema, self.E, cfg["ema_beta"])
        if i == self.ema_g_start:
            self.G_ema.load_state_dict(self.G.state_dict())
        elif i > self.ema_g_start:
            ema_update(self.G_ema, self.G, cfg["ema_beta"])
        return out

    def _pretrained_step(self, i: int) -> dict[str, float]:
        if i < self.gan_start:
            out = self._head_step()
            if i == self.gan_start - 1:  # end of the head phase: assign with the best head, EMA restarts there
                scores = self.head_phase.choose_best(self.E)
                self.E_ema.load_state_dict(self.E.state_dict())
                out["heads/best"] = float(int(self.E.best))
                out["heads/best_loss"] = float(min(scores))
            return out
        idx, batch = self.batches.next()
        x = random_flip(to_unit(batch), self.aug_gen)
        x = to_signed(x)
        if self.speed.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self._gan_step(i, x, idx, x.shape[0])
        ema_update(self.E_ema, self.E, self.cfg["ema_beta"])
        if i == self.ema_g_start:
            self.G_ema.load_state_dict(self.G.state_dict())
        elif i > self.ema_g_start:
            ema_update(self.G_ema, self.G, self.cfg["ema_beta"])
        return out

    def _head_step(self) -> dict[str, float]:
        """One update of E's class heads (SCAN) and style head (MoCo between an image's two views)."""
        cfg, phase = self.cfg, self.head_phase
        idx = torch.from_numpy(self.head_sampler.next_indices()).to(self.device)
        loss, out = phase.losses(idx, self.head_gen, self.labels, self.anchors)
        query, key_view = phase.style_views(idx, self.head_gen)
        if self.keep is not None:  # excluded images train no style either
            kept = self.keep[idx.cpu()].to(self.device)
            query, key_view = query[kept], key_view[kept]
        styles = self.E.cont(query)
        with torch.no_grad():
            keys = self.E_ema.cont(key_view)
        loss_moco = moco_loss(styles, keys, self.queue.negatives(), cfg["temperature"])
        loss = loss + cfg["w_moco"] * loss_moco
        self.opt_e.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_e.step()
        self.queue.push(keys)
        ema_update(self.E_ema, self.E, cfg["ema_beta"])
        out["loss/moco"] = loss_moco.item()
        return out

    def _encode_reals(self, x: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(class logits without a graph, style codes with one, EMA style keys of the permuted references)."""
        if self.pretrained and not self.dist.enabled:  # one trunk pass serves E and its EMA copy
            with torch.no_grad():
                desc = self.E.describe(*self.E.trunk(x))
            logits, s_src = self.E.forward_descriptor(desc, grad_logits=False)
            with torch.no_grad():
                key_ref = self.E_ema.cont(desc[perm])
            return logits, s_src, key_ref
        logits, s_src = self.run_E(x, grad_logits=False)
        with torch.no_grad():
            _, key_ref = self.E_ema(x[perm])
        return logits, s_src, key_ref

    def _pseudo_labels(self, logits: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """argmax of the class head; human labels win where a semi-supervised run has them."""
        y = logits.detach().argmax(1)
        if self.labels is not None:
            known = self.labels[torch.from_numpy(idx)].to(self.device)
            y = torch.where(known >= 0, known, y)
        return y

    def _gan_step(self, i: int, x: torch.Tensor, idx: np.ndarray, b: int) -> dict[str, float]:
        cfg = self.cfg
        perm = torch.randperm(b, generator=self.perm_gen, device=self.device)
        with self._autocast():
            logits, s_src, key_ref = self._encode_reals(x, perm)
            y = self._pseudo_labels(logits, idx)
            s_ref, x_ref, y_ref = s_src[perm], x[perm], y[perm]
            fake, rec = self.run_G(x, torch.cat([s_ref, s_src])).chunk(2)  # one content pass for both

        # 2. discriminator: hinge on real references vs. translations, R1 on the reals (every r1_every steps)
        self.D.requires_grad_(True)
        every = self.speed.r1_every
        with_r1 = (i - self.gan_start) % every == 0
        real = x_ref.detach().requires_grad_(with_r1)
        with self._autocast():
            d_real = self.run_D(real, y_ref)
            d_fake = self.run_D(fake.detach(), y_ref)
        loss_d_adv = d_hinge_loss(d_real, d_fake)
        loss_d = loss_d_adv
        if with_r1:
            loss_r1 = r1_penalty(d_real, real)
            loss_d = loss_d + cfg["w_r1"] * every * loss_r1
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        # 3. generator and guiding network: adversarial on translation and reconstruction, L1, style contrastive
        self.D.requires_grad_(False)
        with self._autocast():
            d_out = self.run_D_frozen(torch.cat([fake, rec]), torch.cat([y_ref, y]))
            _, s_fake = self.run_E(fake, grad_logits=False)
        loss_adv = g_adv_loss(d_out[:b], d_out[b:])
        loss_rec = (rec.float() - x).abs().mean()
        loss_sty = moco_loss(s_fake, key_ref.float(), self.queue.negatives(), cfg["temperature"])
        loss_g = cfg["w_adv"] * loss_adv + cfg["w_rec"] * loss_rec + cfg["w_sty"] * loss_sty
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_e.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.opt_e.step()
        if self.pretrained:  # the warm-up filled the queue from cached features; the GAN phase feeds it the same way
            self.queue.push(all_gather_rows(self.dist, key_ref.float().detach()))
        out = {
            "loss/d_adv": loss_d_adv.item(),
            "loss/g_adv": loss_adv.item(),
            "loss/rec": loss_rec.item(),
            "loss/g_style": loss_sty.item(),
        }
        if with_r1:
            out["loss/r1"] = loss_r1.item()
        return out

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
            "sampler": self.batches.state_dict(),
            **({"head_sampler": self.head_sampler.state_dict(), "head_gen": self.head_gen.get_state()}
               if self.pretrained else {}),
            **self._random_state(),
        }

    def _random_state(self) -> dict[str, Any]:
        """This rank's generators and global RNG; under torchrun every rank's, gathered (a collective call)."""
        own = {"generators": {"aug": self.aug_gen.get_state(), "perm": self.perm_gen.get_state()}, "rng": rng_state()}
        if not self.dist.enabled:
            return own
        return {**own, "ranks": gather_objects(self.dist, own)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict` (tensors may come from the CPU)."""
        for name, weights in state["models"].items():
            getattr(self, name).load_state_dict(weights)
        for name, opt_state in state["optimizers"].items():
            getattr(self, name).load_state_dict(opt_state)
        self.queue.load_state_dict(state["queue"])
        self.batches.load_state_dict(state["sampler"])
        if self.pretrained:
            self.head_sampler.load_state_dict(state["head_sampler"])
            self.head_gen.set_state(state["head_gen"])
        own = state
        if self.dist.enabled:
            ranks = state.get("ranks") or []
            # resumed with another number of processes: this rank keeps its freshly seeded streams
            own = ranks[self.dist.rank] if len(ranks) == self.dist.world else None
        if own is not None:
            self.aug_gen.set_state(own["generators"]["aug"])
            self.perm_gen.set_state(own["generators"]["perm"])
            set_rng_state(own["rng"])
        self.step_count = int(state["step"])
