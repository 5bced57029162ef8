"""U-GAT-IT (Kim et al., ICLR 2020) trained on the two domains: A→B and B→A generators, global and local critics.

Losses and schedule follow the PyTorch port: LSGAN on the patch and CAM outputs of four discriminators, cycle and
identity L1 (weight 10), generator CAM BCE (weight 1000), Adam(lr 1e-4, betas (0.5, 0.999), weight decay 1e-4), batch
1, 1 M iterations with the learning rate decayed linearly to 0 over the second half, flip + resize-and-crop
augmentation, ρ clamped to [0, 1] after every generator step.

Differences from the reference (see also `models/ugatit/networks.py`):
- every generator output of an iteration (translations, cycles, identities and their CAM logits) is computed once,
  in three batched generator calls, and shared by the discriminator step (detached) and the generator step; the
  reference runs the generators again and backpropagates the discriminator loss through them;
- real and fake images go through each discriminator as one batch in the discriminator step;
- the discriminators are frozen (requires_grad off) during the generator step;
- samples and `translate` run under `no_grad` (the reference's visualisation leaked memory without it);
- optional EMA copies of the generators (`g_ema`, the enhanced fork's option) are used for samples and `translate`;
  the decay is warmed up as min(g_ema, (1 + t) / (10 + t)) so short runs get a useful average;
- the resize-and-crop jitter is relative (30/256 of the image size, the reference's 286→256 at every size);
- bf16 autocast on CUDA (losses, normalisation statistics and spectral norms in float32);
- samplers, augmentation generator, LR schedulers and optimisers are checkpointed, so resume is exact.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import make_grid

from i2icurate.config import Option
from i2icurate.data.augment import diff_augment, flip_and_crop, random_crops, resize_square, signed_from_u8
from i2icurate.data.sampler import BatchSource, EpochSampler
from i2icurate.engines.checkpoint import rng_state, set_rng_state
from i2icurate.engines.distributed import SINGLE, Dist, average_gradients_on_step, broadcast_module
from i2icurate.engines.tunit import autocast_dtype, ema_update, warmed_ema_decay
from i2icurate.errors import UserError
from i2icurate.models.ugatit import Discriminator, ResnetGenerator, fit_layers
from i2icurate.models.ugatit.losses import cam_loss, d_loss, g_adv_loss, l1
from i2icurate.translators.base import CROP_OPTION, check_crop

OPTIONS: tuple[Option, ...] = (
    Option("ugatit_size", "full", "Generator: full (the paper's; FC on the whole attention map, 279 M parameters at "
           "256 px) or light (pooled attention map, 10.6 M).", str, choices=("light", "full")),
    Option("ch", 64, "Base channel width of the generators and discriminators.", int, 1, 1024),
    Option("n_res", 4, "Residual blocks in the generator's encoder and in its decoder.", int, 1, 32),
    Option("w_adv", 1.0, "Adversarial weight (discriminators and generators).", float, 0.0),
    Option("w_cycle", 10.0, "Cycle-consistency L1 weight.", float, 0.0),
    Option("w_identity", 10.0, "Identity L1 weight.", float, 0.0),
    Option("w_cam", 1000.0, "Generator CAM (attention) BCE weight.", float, 0.0),
    Option("weight_decay", 1e-4, "Adam weight decay of every network.", float, 0.0),
    Option("g_ema", 0.999, "EMA decay of the generator copies used for samples and translation (0 = off).", float,
           0.0, 0.99999),
    Option("cycle_noise", 0.0, "Std of Gaussian noise added to a translation before it is mapped back for the cycle "
           "loss (0 = the paper's): drowns the faint patterns a generator hides to pass the cycle.", float, 0.0, 2.0),
    Option("diffaug", 0, "1 = the critics see real and translated images through DiffAugment's translation and "
           "cutout (small folders: keeps them from memorising a domain).", int, 0, 1),
    CROP_OPTION,
)
DEFAULTS: dict[str, Any] = {"lr": 1e-4, "batch_size": 1, "iters": 1_000_000, "decay_frac": 0.5, "img_size": 256}
PRESETS: dict[str, dict[str, Any]] = {
    "full": {},
    # Light networks at 32 px: a CPU demo in minutes (the global critic shrinks to 5 layers at this size).
    "tiny": {
        "img_size": 32,
        "ch": 8,
        "n_res": 2,
        "ugatit_size": "light",
        "iters": 200,
        "batch_size": 4,
        "log_every": 10,
        "sample_every": 50,
        "ckpt_every": 50,
    },
}
TRAINS = True
# The CPU plan (translate_plan.py): at a half-hour budget, two residual blocks and twice the paper's learning rate learn
# the target domain faster than the paper's four blocks at 1e-4 (KID 4.36 against 6.97, bench/RESULTS.md, 2026-11-30). A
# whole run (samples and checkpoints included) costs 0.80 s per iteration at 64 px on one thread of the 2-core
# development machine in fp32. Its CPU computes bf16 natively (AVX512-BF16), where bf16 autocast costs 0.65 s (0.61 in
# one-thread runs; the bf16 plan's first 825 iterations on two threads took 0.39 s each, where 0.60 would promise 0.36):
# the plan trains in bf16 there, at lr 3e-4, since at 2e-4 bf16 scored worse than fp32 (KID 4.33 and 4.02 against 3.64
# and 3.74 at 4,700 iterations) and at 3e-4 better (3.52 and 3.20; fp32 at 3e-4 and the fp32 plan's 3,800 iterations
# 3.72 and 3.78; bench/RESULTS.md, 2026-12-02). The instance-layer norms folded into one scale and shift per channel
# (models/ugatit/networks.py) took 14 % (fp32) and 17 % (bf16) off a timed step (bench/translate_plan_speed.py, old and
# new code in the same session, 2026-12-03): the two costs below are the earlier whole-run figures scaled by those
# ratios.
CPU_PLAN: dict[str, Any] = {"ugatit_size": "light", "ch": 16, "n_res": 2, "lr": 2e-4, "batch_size": 4}
CPU_STEP_S = 0.69
CPU_BF16_PLAN: dict[str, Any] = {"lr": 3e-4}
CPU_BF16_STEP_S = 0.54
# the CPU plan's crop training needs the light generator (translate_plan.trains_on_crops)
CROP_PLAN_BLOCKED_BY: dict[str, tuple[str, ...]] = {"ugatit_size": ("full",)}

LOSS_NAMES = ("loss/d", "loss/g_adv", "loss/cycle", "loss/identity", "loss/cam")
CRITICS = ("GA", "LA", "GB", "LB")  # global / local critic of domain A and of domain B
JITTER = 30 / 256
PREVIEW = 8


def linear_decay(iters: int, decay_frac: float) -> Callable[[int], float]:
    """LR factor: 1, then linearly down to 0 over the last `decay_frac` of the iterations."""
    decay = int(round(decay_frac * iters))
    start = iters - decay

    def factor(step: int) -> float:
        return 1.0 if step < start else max(0.0, (iters - step) / max(decay, 1))

    return factor


class Translator:
    """Two U-GAT-IT generators and four critics trained on domains A and B; `translate` maps A to B."""

    def __init__(self, cfg: dict[str, Any], domain_a: np.ndarray, domain_b: np.ndarray, device: torch.device,
                 dist: Dist = SINGLE) -> None:
        """`domain_a`, `domain_b`: (N, S, S, 3) uint8 arrays at S = cfg['img_size']; `dist`: this process's rank
        under torchrun (each rank trains on its share of every batch, gradients averaged before each step)."""
        size = cfg["img_size"]
        if size % 4:
            raise UserError(f"--img-size {size}: U-GAT-IT needs a multiple of 4")
        for name, images in (("A", domain_a), ("B", domain_b)):
            if len(images) == 0:
                raise UserError(f"domain {name} has no images")
            if tuple(images.shape[1:]) != (size, size, 3):
                raise UserError(f"domain {name} images are {tuple(images.shape[1:])}, expected ({size}, {size}, 3)")
        self.crop = check_crop(cfg)
        if self.crop and cfg["ugatit_size"] == "full":
            raise UserError("--crop-size needs --ugatit-size light: the full generator's layers are sized to whole "
                            "--img-size images")
        self.cfg, self.device = cfg, device
        self.amp_dtype = autocast_dtype(cfg["precision"], device)
        torch.manual_seed(cfg["seed"])
        light = cfg["ugatit_size"] == "light"
        self.G_AB = ResnetGenerator(size, cfg["ch"], cfg["n_res"], light).to(device)
        self.G_BA = ResnetGenerator(size, cfg["ch"], cfg["n_res"], light).to(device)
        trained = self.crop or size  # the critics see what a step trains on
        depth = {"G": fit_layers(7, trained), "L": fit_layers(5, trained)}
        self.D = nn.ModuleDict({name: Discriminator(depth[name[0]], cfg["ch"]) for name in CRITICS}).to(device)
        self.G_AB_ema: ResnetGenerator | None = None
        self.G_BA_ema: ResnetGenerator | None = None
        if cfg["g_ema"] > 0:
            self.G_AB_ema, self.G_BA_ema = copy.deepcopy(self.G_AB), copy.deepcopy(self.G_BA)
            self.G_AB_ema.requires_grad_(False)
            self.G_BA_ema.requires_grad_(False)
        adam = {"lr": cfg["lr"], "betas": (0.5, 0.999), "weight_decay": cfg["weight_decay"]}
        if device.type == "cuda":
            adam["fused"] = True
        self.opt_g = torch.optim.Adam(itertools.chain(self.G_AB.parameters(), self.G_BA.parameters()), **adam)
        self.opt_d = torch.optim.Adam(self.D.parameters(), **adam)
        broadcast_module(dist, self.G_AB, self.G_BA, self.D)
        for opt in (self.opt_g, self.opt_d):
            average_gradients_on_step(dist, opt)
        decay = linear_decay(cfg["iters"], cfg["decay_frac"])
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.samplers = {
            "a": EpochSampler(len(domain_a), cfg["batch_size"], cfg["seed"]),
            "b": EpochSampler(len(domain_b), cfg["batch_size"], cfg["seed"] + 1),
        }
        self.sources = {
            "a": BatchSource(domain_a, self.samplers["a"], device, shard=(dist.rank, dist.world)),
            "b": BatchSource(domain_b, self.samplers["b"], device, shard=(dist.rank, dist.world)),
        }
        self.aug_gen = torch.Generator(device=device).manual_seed(cfg["seed"] + 2 + dist.seed_offset)
        self.noise_gen = torch.Generator(device=device).manual_seed(cfg["seed"] + 3 + dist.seed_offset)
        self.step_count = 0
        self._preview: tuple[Tensor, Tensor] | None = None

    def _autocast(self) -> torch.autocast:
        enabled = self.amp_dtype is not None
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=enabled)

    # ------------------------------------------------------------------ one iteration
    def _cycle_input(self, fake: Tensor) -> Tensor:
        """A translation on its way back through the other generator: with `cycle_noise` > 0, plus Gaussian noise
        (Chu et al. 2017: the cycle can then no longer be met by near-invisible patterns in the translation)."""
        sigma = self.cfg.get("cycle_noise", 0.0)
        if sigma <= 0:
            return fake
        noise = torch.randn(fake.shape, generator=self.noise_gen, device=fake.device, dtype=fake.dtype)
        return fake + sigma * noise

    def _train_view(self, u8: Tensor) -> Tensor:
        """A training batch: flipped and jittered, and cut to random `crop_size` windows when that is set."""
        x = flip_and_crop(u8, self.aug_gen, JITTER)
        return random_crops(x, self.crop, self.aug_gen) if self.crop else x

    def _critic_view(self, images: Tensor) -> Tensor:
        """What a critic sees: the images, or their DiffAugment views with `diffaug`."""
        return diff_augment(images, self.aug_gen) if self.cfg.get("diffaug", 0) else images

    def step(self, i: int) -> dict[str, float]:
        """One U-GAT-IT iteration: the four critics, then both generators, on one batch of A and one of B."""
        cfg = self.cfg
        real_a = self._train_view(self.sources["a"].next()[1])
        real_b = self._train_view(self.sources["b"].next()[1])
        na, nb = len(real_a), len(real_b)

        # Every generator output of this iteration, in three batched calls (the networks are per-sample).
        with self._autocast():
            out, cam_ba, _ = self.G_BA(torch.cat([real_b, real_a]))
            fake_ba, idt_a = out.split([nb, na])
            out, cam_ab, _ = self.G_AB(torch.cat([real_a, real_b, self._cycle_input(fake_ba)]))
            fake_ab, idt_b, cyc_b = out.split([na, nb, nb])
            cam_ab = cam_ab[: na + nb]
            cyc_a = self.G_BA(self._cycle_input(fake_ab))[0]
        fakes = {"GA": fake_ba, "LA": fake_ba, "GB": fake_ab, "LB": fake_ab}
        reals = {"GA": real_a, "LA": real_a, "GB": real_b, "LB": real_b}

        # 1. critics: LSGAN on patch and CAM outputs, real and detached fake in one batch per critic
        self.D.requires_grad_(True)
        loss_d = real_a.new_zeros(())
        with self._autocast():
            for name in CRITICS:
                n_real = len(reals[name])
                logits, cam, _ = self.D[name](self._critic_view(torch.cat([reals[name], fakes[name].detach()])))
                real_out, fake_out = (logits[:n_real], cam[:n_real]), (logits[n_real:], cam[n_real:])
                loss_d = loss_d + d_loss(real_out, fake_out)
        loss_d = cfg["w_adv"] * loss_d
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        # 2. generators: adversarial against the updated critics, cycle, identity and CAM losses
        self.D.requires_grad_(False)
        loss_adv = real_a.new_zeros(())
        with self._autocast():
            for name in CRITICS:
                logits, cam, _ = self.D[name](self._critic_view(fakes[name]))
                loss_adv = loss_adv + g_adv_loss((logits, cam))
        loss_cycle = l1(cyc_a, real_a) + l1(cyc_b, real_b)
        loss_idt = l1(idt_a, real_a) + l1(idt_b, real_b)
        # G_BA's CAM says 1 on B (its source) and 0 on A; G_AB's says 1 on A and 0 on B
        loss_cam = cam_loss(cam_ba[:nb], cam_ba[nb:]) + cam_loss(cam_ab[:na], cam_ab[na:])
        loss_g = (cfg["w_adv"] * loss_adv + cfg["w_cycle"] * loss_cycle + cfg["w_identity"] * loss_idt
                  + cfg["w_cam"] * loss_cam)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.G_AB.clip_rho()
        self.G_BA.clip_rho()
        self.sched_g.step()
        self.sched_d.step()
        self._update_ema(i)
        self.step_count = i + 1
        values = torch.stack([loss_d, loss_adv, loss_cycle, loss_idt, loss_cam]).detach().tolist()  # one sync
        return dict(zip(LOSS_NAMES, values, strict=True))

    def _update_ema(self, i: int) -> None:
        if self.G_AB_ema is None or self.G_BA_ema is None:
            return
        beta = warmed_ema_decay(self.cfg["g_ema"], i)
        ema_update(self.G_AB_ema, self.G_AB, beta)
        ema_update(self.G_BA_ema, self.G_BA, beta)

    # ------------------------------------------------------------------ inference and pictures
    def _generators(self) -> tuple[ResnetGenerator, ResnetGenerator]:
        """The EMA generators when enabled, else the trained ones."""
        if self.G_AB_ema is not None and self.G_BA_ema is not None:
            return self.G_AB_ema, self.G_BA_ema
        return self.G_AB, self.G_BA

    def _run(self, net: ResnetGenerator, x: Tensor) -> Tensor:
        """The generator's image in eval mode (no grad is the caller's), restoring its training mode."""
        was_training = net.training
        net.eval()
        with self._autocast():
            out = net(x)[0]
        net.train(was_training)
        return out.float()

    @torch.no_grad()
    def translate(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) in [-1, 1] from domain A -> domain B, at the input's size (resized to img_size inside)."""
        size = x.shape[-1]
        out = self._run(self._generators()[0], resize_square(x.to(self.device).float(), self.cfg["img_size"]))
        if out.shape[-1] != size:
            out = F.interpolate(out, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        return out.clamp(-1, 1)

    @torch.no_grad()
    def samples(self) -> dict[str, Tensor]:
        """A fixed preview: rows real A, fake B, cycle A, real B, fake A, cycle B (EMA generators when enabled)."""
        if self._preview is None:
            im_a, im_b = self.sources["a"].images, self.sources["b"].images
            n = min(PREVIEW, len(im_a), len(im_b))
            self._preview = (
                signed_from_u8(im_a[np.linspace(0, len(im_a) - 1, n).astype(int)], self.device),
                signed_from_u8(im_b[np.linspace(0, len(im_b) - 1, n).astype(int)], self.device),
            )
        real_a, real_b = self._preview
        g_ab, g_ba = self._generators()
        fake_b = self._run(g_ab, real_a)
        fake_a = self._run(g_ba, real_b)
        rows = [real_a, fake_b, self._run(g_ba, fake_b), real_b, fake_a, self._run(g_ab, fake_a)]
        grid = make_grid(torch.cat(rows), nrow=len(real_a), normalize=True, value_range=(-1, 1))
        return {"samples/a_fakeb_cyclea_b_fakea_cycleb": grid}

    # ------------------------------------------------------------------ state
    def _model_names(self) -> list[str]:
        return ["G_AB", "G_BA", "D"] + (["G_AB_ema", "G_BA_ema"] if self.G_AB_ema is not None else [])

    def state_dict(self) -> dict[str, Any]:
        """Networks, EMA copies, optimisers, LR schedulers, samplers, random generators and the step."""
        return {
            "step": self.step_count,
            "config": self.cfg,
            "models": {n: getattr(self, n).state_dict() for n in self._model_names()},
            "optimizers": {n: getattr(self, n).state_dict() for n in ("opt_g", "opt_d")},
            "schedulers": {n: getattr(self, n).state_dict() for n in ("sched_g", "sched_d")},
            "samplers": {d: b.state_dict() for d, b in self.sources.items()},
            "generators": {"aug": self.aug_gen.get_state(), "noise": self.noise_gen.get_state()},
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict` (tensors may come from the CPU)."""
        for name in self._model_names():
            getattr(self, name).load_state_dict(state["models"][name])
        for name, opt_state in state["optimizers"].items():
            getattr(self, name).load_state_dict(opt_state)
        for name, sched_state in state["schedulers"].items():
            getattr(self, name).load_state_dict(sched_state)
        for domain, sampler_state in state["samplers"].items():
            self.sources[domain].load_state_dict(sampler_state)
        self.aug_gen.set_state(state["generators"]["aug"])
        if "noise" in state["generators"]:  # a checkpoint from before the option has none
            self.noise_gen.set_state(state["generators"]["noise"])
        set_rng_state(state["rng"])
        self.step_count = int(state["step"])
