"""SRUNIT (ICCV 2021): CUT (LSGAN + PatchNCE with identity NCE) plus the semantic-robustness regulariser.

Written from the spec (the reference repository has no licence). Differences from the reference, losses and
update order otherwise kept:
- G runs once on [real_A; real_B] and returns the translation and the source taps; its output is shared by the D
  step (detached) and the G step; the translations are re-encoded in one pass; D is frozen during the G step.
- the SR perturbation size and the loss denominator are the same draw by default (`sr_faithful 1` restores the
  reference's independent draw), and during the first `inact_frac` of iterations G and F still get the CUT updates
  (the reference updates neither while the SR term is inactive);
- iterations instead of epochs: the LR decays linearly to 0 over the last `decay_frac`, and the resize-crop jitter
  stops when the decay starts (the reference's load_size = crop_size during the decay epochs);
- patch positions come from `torch.randperm` on the device (one draw per layer per step, shared across the batch,
  also across the translation and identity halves), and every random generator is checkpointed;
- an EMA copy of the generator (`g_ema`, as U-GAT-IT's; CUT has none) makes the samples and translations, its decay
  warmed up as min(g_ema, (1 + t) / (10 + t)) so that short runs get a useful average.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid

from i2icurate.config import Option
from i2icurate.data.augment import diff_augment, flip_and_crop, random_crops, resize_square, to_signed, to_unit
from i2icurate.data.sampler import BatchSource, EpochSampler
from i2icurate.engines.checkpoint import rng_state, set_rng_state
from i2icurate.engines.distributed import SINGLE, Dist, average_gradients_on_step, broadcast_module
from i2icurate.engines.tunit import autocast_dtype, ema_update, warmed_ema_decay
from i2icurate.errors import UserError
from i2icurate.models.cut import Discriminator, Generator, PatchSampleF
from i2icurate.models.cut.losses import lsgan_d_loss, lsgan_g_loss, patch_nce_loss, sr_loss
from i2icurate.models.cut.networks import sample_patch_ids
from i2icurate.translators.base import CROP_OPTION, check_crop

OPTIONS: tuple[Option, ...] = (
    Option("ngf", 64, "Generator base width.", int, 1, 1024),
    Option("ndf", 64, "Discriminator base width.", int, 1, 1024),
    Option("n_blocks", 9, "Residual blocks in the generator.", int, 1, 64),
    Option("nce_layers", "0,4,8,12,16", "Generator module indices tapped for PatchNCE (comma-separated)."),
    Option("num_patches", 256, "Positions sampled per tapped layer.", int, 1, 65536),
    Option("nce_t", 0.07, "PatchNCE temperature.", float, 1e-4, 10.0),
    Option("lambda_nce", 1.0, "PatchNCE weight.", float, 0.0),
    Option("nce_idt", 1, "Also apply PatchNCE to (B, G(B)) and average the two terms (1) or not (0).", int, 0, 1),
    Option("reg", 0.001, "Weight of the semantic-robustness loss (0 = plain CUT).", float, 0.0),
    Option("reg_noise", 0.001, "Largest feature perturbation of the semantic-robustness loss.", float, 1e-6),
    Option("reg_layers", "0,1,2,3,4", "Positions in --nce-layers the semantic-robustness loss picks from."),
    Option("inact_frac", 0.25, "Share of iterations trained as plain CUT before the SR loss starts.", float, 0, 1),
    Option("sr_version", "v2", "v2: SR gradients reach G and F; v1: F is frozen for the SR term.", str,
           choices=("v1", "v2")),
    Option("sr_faithful", 0, "1 = the reference's noise (fixed size, independent loss denominator).", int, 0, 1),
    Option("lambda_gan", 1.0, "Adversarial (LSGAN) weight.", float, 0.0),
    Option("g_ema", 0.999, "EMA decay of the generator copy used for samples and translation (0 = off).", float,
           0.0, 0.99999),
    Option("diffaug", 0, "1 = the discriminator sees real and translated images through DiffAugment's translation "
           "and cutout (small folders: keeps it from memorising the target domain).", int, 0, 1),
    CROP_OPTION,
)
DEFAULTS: dict[str, Any] = {"lr": 2e-4, "batch_size": 1, "iters": 400_000, "decay_frac": 0.5, "img_size": 256}
PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    "tiny": {
        "img_size": 32,
        "ngf": 8,
        "ndf": 8,
        "n_blocks": 2,
        "num_patches": 32,
        "nce_layers": "0,4,8,12",
        "reg_layers": "0,1,2,3",
        # reg 1e-3 (the paper's) collapsed the patch embedding within ~30 iterations of a 200-iteration 32 px run
        "reg": 1e-4,
        "iters": 200,
        "batch_size": 4,
        "log_every": 10,
        "sample_every": 50,
        "ckpt_every": 50,
    },
}
TRAINS = True
# The CPU plan's networks (translate_plan.py) and their cost at 64 px per iteration of a whole run, samples and
# checkpoints included: 0.22 s on two threads of the 2-core development machine, alone (10,100 iterations took
# 36.8 min), i.e. 0.36 s on one (a timed step alone: 0.27 s and 0.16 s; bench/RESULTS.md, 2026-11-29).
CPU_PLAN: dict[str, Any] = {"ngf": 16, "ndf": 16, "n_blocks": 4, "nce_layers": "0,4,8,12", "reg_layers": "0,1,2,3",
                            "num_patches": 64, "reg": 1e-4, "batch_size": 4}
CPU_STEP_S = 0.36

JITTER = 30 / 256  # the reference resizes to 286 and crops 256
PREVIEW = 8


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise UserError(f"--{flag}: expected comma-separated integers, got {text!r}") from None
    if not values or len(set(values)) != len(values):
        raise UserError(f"--{flag}: expected distinct comma-separated integers, got {text!r}")
    return values


def parse_layers(cfg: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(nce_layers, reg_layers) from the config, checked against the generator's encoder."""
    nce = tuple(sorted(_int_list(cfg["nce_layers"], "nce-layers")))
    last = 11 + cfg["n_blocks"]
    bad = [i for i in nce if not 0 <= i <= last]
    if bad:
        raise UserError(f"--nce-layers {bad[0]} is not an encoder module (0..{last} with --n-blocks {cfg['n_blocks']})")
    reg = _int_list(cfg["reg_layers"], "reg-layers")
    bad = [i for i in reg if not 0 <= i < len(nce)]
    if bad:
        raise UserError(f"--reg-layers {bad[0]} does not index --nce-layers (0..{len(nce) - 1})")
    return nce, reg


def lr_lambda(iters: int, decay_frac: float) -> Callable[[int], float]:
    """LR factor per iteration: 1, then linear to 0 over the last `decay_frac` (CUT's rule, per iteration)."""
    n_decay = int(round(decay_frac * iters))
    start = iters - n_decay

    def factor(i: int) -> float:
        return 1.0 - max(0, i + 1 - start) / (n_decay + 1)

    return factor


class Translator:
    """SRUNIT trainer and A -> B translator: networks, optimisers, schedulers, samplers and generators."""

    def __init__(self, cfg: dict[str, Any], domain_a: np.ndarray, domain_b: np.ndarray, device: torch.device,
                 dist: Dist = SINGLE):
        """`domain_a`, `domain_b`: (N, S, S, 3) uint8 arrays; `dist`: this process's rank under torchrun (each rank
        trains on its share of every batch, gradients averaged before each optimiser step)."""
        self.cfg = cfg
        self.nce_layers, self.reg_layers = parse_layers(cfg)
        self.crop = check_crop(cfg)
        if cfg["batch_size"] > min(len(domain_a), len(domain_b)):
            raise UserError(f"--batch-size {cfg['batch_size']} is larger than a domain "
                            f"({len(domain_a)} and {len(domain_b)} images)")
        self.device = device
        self.amp_dtype = autocast_dtype(cfg["precision"], device)
        seed = cfg["seed"]
        torch.manual_seed(seed)
        self.G = Generator(ngf=cfg["ngf"], n_blocks=cfg["n_blocks"]).to(device)
        self.D = Discriminator(ndf=cfg["ndf"]).to(device)
        self.F = PatchSampleF(self.G.tap_channels(self.nce_layers)).to(device)
        self.G_ema: Generator | None = None
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg["lr"], betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg["lr"], betas=betas)
        self.opt_f = torch.optim.Adam(self.F.parameters(), lr=cfg["lr"], betas=betas)
        broadcast_module(dist, self.G, self.D, self.F)
        # after the broadcast, so every rank averages the same weights; a run begun before the option has none
        if cfg.get("g_ema", 0.0) > 0:
            self.G_ema = copy.deepcopy(self.G).requires_grad_(False)
        for opt in (self.opt_g, self.opt_d, self.opt_f):
            average_gradients_on_step(dist, opt)
        rule = lr_lambda(cfg["iters"], cfg["decay_frac"])
        self.scheds = {n: torch.optim.lr_scheduler.LambdaLR(getattr(self, n), rule)
                       for n in ("opt_g", "opt_d", "opt_f")}
        self.sampler_a = EpochSampler(len(domain_a), cfg["batch_size"], seed)
        self.sampler_b = EpochSampler(len(domain_b), cfg["batch_size"], seed + 1)
        self.batches_a = BatchSource(domain_a, self.sampler_a, device, shard=(dist.rank, dist.world))
        self.batches_b = BatchSource(domain_b, self.sampler_b, device, shard=(dist.rank, dist.world))
        self.gens = {name: torch.Generator(device=device).manual_seed(seed + 2 + k + dist.seed_offset)
                     for k, name in enumerate(("aug", "patch", "noise", "diffaug"))}
        self.gens["layer"] = torch.Generator().manual_seed(seed + 5)  # CPU: choosing the SR layer needs no sync
        self.decay_start = cfg["iters"] - int(round(cfg["decay_frac"] * cfg["iters"]))
        self.sr_start = int(round(cfg["inact_frac"] * cfg["iters"]))
        self.step_count = 0
        self._preview: Tensor | None = None

    # ------------------------------------------------------------------ one iteration
    def _autocast(self) -> torch.autocast:
        enabled = self.amp_dtype is not None
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=enabled)

    def _input(self, u8: Tensor, jitter: float | None) -> Tensor:
        """uint8 (B, S, S, 3) -> (B, 3, img, img) in [-1, 1]; unless `jitter` is None (whole images, for previews),
        flipped, jittered and cut to random `crop_size` windows when that is set."""
        if jitter is None:
            return resize_square(to_signed(to_unit(u8)), self.cfg["img_size"])
        x = resize_square(flip_and_crop(u8, self.gens["aug"], jitter), self.cfg["img_size"])
        return random_crops(x, self.crop, self.gens["aug"]) if self.crop else x

    def _nce(self, src_taps: list[Tensor], out: Tensor, n: int) -> tuple[Tensor, Tensor, list[Tensor]]:
        """Mean PatchNCE over layers for the first `n` images and for the rest (identity), and the patch ids."""
        with self._autocast():
            q_taps = self.G.encode(out, self.nce_layers)
        ids = [sample_patch_ids(t.shape[2] * t.shape[3], self.cfg["num_patches"], self.gens["patch"], self.device)
               for t in src_taps]
        main, idt = [], []
        for j, (k_tap, q_tap) in enumerate(zip(src_taps, q_taps, strict=True)):
            # Separate autocast regions: a weight cast cached under no_grad would cut F out of the query's graph.
            with self._autocast():
                q = self.F.project(j, q_tap, ids[j])
            with torch.no_grad(), self._autocast():
                k = self.F.project(j, k_tap, ids[j])
            per_patch = patch_nce_loss(q, k, len(out), self.cfg["nce_t"])
            split = n * len(ids[j])
            main.append(per_patch[:split].mean())
            idt.append(per_patch[split:].mean() if len(out) > n else per_patch.new_zeros(()))
        lam = self.cfg["lambda_nce"]
        return lam * torch.stack(main).mean(), lam * torch.stack(idt).mean(), ids

    def _sr(self, src_taps: list[Tensor], ids: list[Tensor], n: int) -> Tensor:
        """L_SR at one tap chosen uniformly from reg_layers, on the source taps of the first `n` images."""
        pick = int(torch.randint(len(self.reg_layers), (1,), generator=self.gens["layer"]))
        j = self.reg_layers[pick]
        with self._autocast():
            return sr_loss(self.G, self.F, src_taps[j][:n], self.nce_layers[j], j, ids[j], self.cfg["reg_noise"],
                           self.gens["noise"], faithful=bool(self.cfg["sr_faithful"]),
                           freeze_head=self.cfg["sr_version"] == "v1")

    def _d_view(self, images: Tensor) -> Tensor:
        """What the discriminator sees: the images, or their DiffAugment views with `diffaug`."""
        return diff_augment(images, self.gens["diffaug"]) if self.cfg.get("diffaug", 0) else images

    def step(self, i: int) -> dict[str, float]:
        """One SRUNIT iteration: D on (real B, G(A)), then G and F on LSGAN + PatchNCE (+ reg * L_SR when active)."""
        cfg = self.cfg
        jitter = JITTER if i < self.decay_start else 0.0
        real_a = self._input(self.batches_a.next()[1], jitter)
        real_b = self._input(self.batches_b.next()[1], jitter)
        n = len(real_a)
        with self._autocast():
            out, src_taps = self.G.forward_taps(torch.cat([real_a, real_b]) if cfg["nce_idt"] else real_a,
                                                self.nce_layers)
        fake_b = out[:n]

        # 1. discriminator: LSGAN on real B vs. the detached translation, one pass (IN is per image)
        self.D.requires_grad_(True)
        with self._autocast():
            pred = self.D(self._d_view(torch.cat([fake_b.detach(), real_b])))
        loss_d = lsgan_d_loss(pred[n:], pred[:n])
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        # 2. generator and patch head
        self.D.requires_grad_(False)
        with self._autocast():
            pred_fake = self.D(self._d_view(fake_b))
        loss_gan = lsgan_g_loss(pred_fake)
        loss_nce, loss_idt, ids = self._nce(src_taps, out, n)
        loss_g = cfg["lambda_gan"] * loss_gan + (0.5 * (loss_nce + loss_idt) if cfg["nce_idt"] else loss_nce)
        if cfg["reg"] > 0 and i >= self.sr_start:
            loss_sr = self._sr(src_taps, ids, n)
            loss_g = loss_g + cfg["reg"] * loss_sr
        else:
            loss_sr = loss_g.new_zeros(())
        self.opt_g.zero_grad(set_to_none=True)
        self.opt_f.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.opt_f.step()
        for sched in self.scheds.values():
            sched.step()
        if self.G_ema is not None:
            ema_update(self.G_ema, self.G, warmed_ema_decay(cfg["g_ema"], i))
        self.step_count = i + 1
        names = ("loss/d", "loss/g_gan", "loss/nce", "loss/nce_idt", "loss/sr")
        values = torch.stack([loss_d, loss_gan, loss_nce, loss_idt, loss_sr]).detach().tolist()  # one sync
        return dict(zip(names, values, strict=True))

    # ------------------------------------------------------------------ pictures, inference and state
    @torch.no_grad()
    def samples(self) -> dict[str, Tensor]:
        """A fixed preview: rows real A, fake B, real B, identity G(B)."""
        if self._preview is None:
            images = (self.batches_a.images, self.batches_b.images)
            n = min(PREVIEW, *(len(x) for x in images))
            rows = [np.linspace(0, len(x) - 1, n).astype(int) for x in images]
            u8 = [torch.from_numpy(np.array(x[r])).to(self.device) for x, r in zip(images, rows, strict=True)]
            self._preview = torch.cat([self._input(t, None) for t in u8])
        x = self._preview
        n = len(x) // 2
        out = self._generate(x)
        grid = torch.cat([x[:n], out[:n], x[n:], out[n:]])
        return {"samples/realA_fakeB_realB_idtB": make_grid(grid, nrow=n, normalize=True, value_range=(-1, 1))}

    @torch.no_grad()
    def _generate(self, x: Tensor) -> Tensor:
        """The generator's output (the EMA copy when enabled) in eval mode, float32."""
        gen = self.G_ema if self.G_ema is not None else self.G
        gen.eval()
        with self._autocast():
            out = gen(x.to(self.device))
        gen.train()
        return out.float()

    @torch.no_grad()
    def translate(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) in [-1, 1] (S a multiple of 4) -> the A -> B translation, float32 on x's device."""
        return self._generate(x).clamp(-1, 1).to(x.device)

    def _networks(self) -> tuple[str, ...]:
        return ("G", "D", "F") + (("G_ema",) if self.G_ema is not None else ())

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: networks, optimisers, schedulers, samplers, generators, step."""
        return {
            "step": self.step_count,
            "config": self.cfg,
            "models": {n: getattr(self, n).state_dict() for n in self._networks()},
            "optimizers": {n: getattr(self, n).state_dict() for n in ("opt_g", "opt_d", "opt_f")},
            "schedulers": {n: s.state_dict() for n, s in self.scheds.items()},
            "samplers": {"a": self.batches_a.state_dict(), "b": self.batches_b.state_dict()},
            "generators": {n: g.get_state() for n, g in self.gens.items()},
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict` (tensors may come from the CPU)."""
        for name, weights in state["models"].items():
            if name in self._networks():
                getattr(self, name).load_state_dict(weights)
        if self.G_ema is not None and "G_ema" not in state["models"]:  # a checkpoint from before the EMA copy
            self.G_ema.load_state_dict(self.G.state_dict())
        for name, opt_state in state["optimizers"].items():
            getattr(self, name).load_state_dict(opt_state)
        for name, sched_state in state["schedulers"].items():
            self.scheds[name].load_state_dict(sched_state)
        self.batches_a.load_state_dict(state["samplers"]["a"])
        self.batches_b.load_state_dict(state["samplers"]["b"])
        for name, gen_state in state["generators"].items():
            self.gens[name].set_state(gen_state)
        set_rng_state(state["rng"])
        self.step_count = int(state["step"])
