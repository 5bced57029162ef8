"""The default discover schedule: chosen from the device and the folder size, printed with a time estimate.

`discover FOLDER` without `--preset` trains on a pretrained trunk with a budget that fits the machine:
- on a CPU: 32 px images for the generator and discriminator (small widths, six times the paper's learning
  rates; 64 px with `--domains style`), the trunk reading 64 px, and a generator phase sized so that 10,000 images
  finish in about a quarter of an hour on 2 cores;
- on a GPU: 128 px, the paper's widths, the trunk reading 128 px, 10,000 generator iterations; with `--domains
  style` the trunk reads (and the images are decoded at) no more than the folder's typical side (`style_trunk_size`).
The class heads train for about 200 passes over the cached features either way, and at least 2,000 updates on small
folders: they cost seconds (2,000 updates take 30 s on one CPU thread), and 40 passes left them unconverged
(bench/RESULTS.md). Every value is an ordinary option: an explicit flag wins over the plan, and `--preset full` is
the paper's schedule.

The time estimate uses per-image costs measured on the development machine (a 2-core AMD EPYC; bench/RESULTS.md)
and on the reference GPU, scaled by the thread count; it is a guide, printed so a user can stop early.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from i2icurate.config import AUTO, CONTENT, STYLE, run_domains
from i2icurate.metrics.k_choice import REFINE_RADIUS, REFINE_SAMPLE

HEAD_EPOCHS = 200  # measured: 40 passes left MNIST-5k 4 ACC points and animal-mnist 1-2 below the plateau
MIN_HEAD_STEPS, MAX_HEAD_STEPS = 500, 5000
# measured: on the 1,797 scikit-learn digits 702 updates (200 passes) left ACC 2.3 points below 2,000 updates, and a
# review's unlabelled control moved 11.5 % of a cluster on its own (bench/RESULTS.md); 2,000 cost ~40 s on a CPU
PLAN_MIN_HEAD_STEPS = 2000
# Seconds per unit on 2 CPU threads, measured alone on the 2-core development machine (bench/RESULTS.md, cluster
# quality with the pretrained trunk: 10,000 images in 7 min 22 s); the GPU figures are rough guesses until measured.
# k_step: one update of the heads -k auto trains per candidate K (no style head, no EMA; 4.7 ms on one CPU thread,
# bench/RESULTS.md), k_sweep: the k-means sweep over the default range
CPU_COST = {"decode": 1 / 900, "trunk": 1 / 230, "head_step": 0.02, "gan_step": 0.7, "k_step": 0.0023, "k_sweep": 5.0}
GPU_COST = {"decode": 1 / 2000, "trunk": 1 / 8000, "head_step": 0.004, "gan_step": 0.25, "k_step": 0.002,
            "k_sweep": 10.0}
# seconds of generator training on a 2-core CPU: 0.03 s per image, between 2 and 5.5 minutes
CPU_GAN_BUDGET_S = (120.0, 330.0, 0.03)
# how many times a content run's features and export a style run's take (session 26, at 32 px: 122 s against 23 s for
# 1,600 images on one thread; session 27, the style plan's 64 px decode: the feature pass 166 s, the heads and export
# about a quarter longer)
STYLE_PASS_FACTORS = (7.0, 4.0)
STYLE_MIN_SIZE = 64  # a style run's trunk reads at least this many pixels, the size its descriptor was measured at


def head_steps(n_images: int, head_batch: int, minimum: int = MIN_HEAD_STEPS) -> int:
    """About HEAD_EPOCHS passes over the folder in batches of `head_batch`, between `minimum` and MAX_HEAD_STEPS
    updates."""
    return int(min(MAX_HEAD_STEPS, max(minimum, math.ceil(HEAD_EPOCHS * n_images / head_batch))))


def hardware_plan(device: torch.device, n_images: int, head_batch: int = 512, threads: int | None = None,
                  domains: str = CONTENT) -> dict[str, Any]:
    """Option values of the default schedule for `device`, a folder of `n_images` images and `--domains`. A style
    run decodes its images at the trunk's size, 64 px on a CPU rather than 32, with as many fewer generator
    iterations as keep the generator's time: its statistics read the pixels themselves, and on the photo renderings
    the 32 px decode lost their medium (bench/RESULTS.md, session 27)."""
    heads = head_steps(n_images, head_batch, PLAN_MIN_HEAD_STEPS)
    if device.type == "cuda":
        gan = 10_000
        plan: dict[str, Any] = {"img_size": 128, "backbone_size": 128, "batch_size": 32}
    else:
        threads = threads or torch.get_num_threads()
        low, high, per_image = CPU_GAN_BUDGET_S
        budget = min(high, max(low, per_image * n_images))
        trunk_size = 64
        img_size = trunk_size if domains == STYLE else 32  # a style run decodes at the size its trunk reads
        step = CPU_COST["gan_step"] * (img_size / 32) ** 2 * 2 / max(1, min(threads, 8))
        gan = int(min(2000, max(100, budget / step)))
        plan = {
            "img_size": img_size, "backbone_size": trunk_size, "batch_size": 32, "style_dim": 32, "g_width": 16,
            "d_width": 16, "d_max_width": 128, "mlp_width": 64, "queue_size": 1024, "ema_beta": 0.99, "log_every": 25,
            "sample_every": 250, "ckpt_every": 250,
            # 6x the paper's: with a reviewer's labels, 2,570 generator iterations at 1e-4 left the line-art
            # translation's KID at 4.99 against the untranslated input's 3.09; 6e-4 reached 2.71 and 2.41 in two
            # runs, 3e-4 2.92 and 3.24, both with paired L1 about 0.054 (bench/RESULTS.md, issue 11)
            "lr_g": 6e-4, "lr_d": 6e-4,
        }
    plan["iters"] = heads + gan
    plan["warmup_frac"] = heads / plan["iters"]
    plan["ema_g_delay"] = 0.01
    return plan


def style_trunk_size(planned: int, side: int | None) -> int:
    """The size a style run's trunk reads (and its images are decoded at): the plan's, but never above the folder's
    typical image side (in steps of 32, at least STYLE_MIN_SIZE). Upsampling adds no rendering and blurs what there
    is: the 64 px photo renderings read at 128 px, as the GPU plan read them, fell from ACC 0.954 to 0.805
    (bench/RESULTS.md, session 28)."""
    if side is None:
        return planned
    return min(planned, max(STYLE_MIN_SIZE, side // 32 * 32))


def fit_plan_to_iters(plan: dict[str, Any], iters: int) -> dict[str, Any]:
    """The plan for an explicit `--iters` (without `--warmup-frac`): iterations beyond the plan's train the
    generator, since the head updates the plan gives are already enough; fewer scale both phases down alike."""
    heads = min(plan["warmup_frac"] * plan["iters"], plan["warmup_frac"] * iters)
    return {**plan, "warmup_frac": heads / iters}


def warmup_iterations(cfg: dict[str, Any]) -> int:
    """Iterations that train the guiding network alone, before the first GAN iteration."""
    return int(round(cfg["warmup_frac"] * cfg["iters"]))


def estimate_seconds(cfg: dict[str, Any], n_images: int, device: torch.device) -> dict[str, float]:
    """Rough seconds per phase (decode, trunk features, heads, generator, export) of a resolved config."""
    cost = GPU_COST if device.type == "cuda" else dict(CPU_COST)
    if device.type != "cuda":
        scale = 2 / max(1, min(torch.get_num_threads(), 8))
        cost = {k: v * scale for k, v in cost.items()}
    warmup = warmup_iterations(cfg)
    size_factor = (cfg.get("backbone_size") or 64) ** 2 / 64**2
    # a style trunk also reads every image's crops (models/backbones/style_trunk.py); measured on 1,600 images, one
    # CPU thread: features 122 s against 23 s, export 60 s against 20 s (bench/RESULTS.md, session 26)
    features_factor, export_factor = STYLE_PASS_FACTORS if run_domains(cfg) == STYLE else (1.0, 1.0)
    gan_factor = (cfg["img_size"] / 32) ** 2 * cfg["batch_size"] / 32
    out = {
        "decode": n_images * cost["decode"],
        "features": 2 * n_images * cost["trunk"] * size_factor * features_factor,
        "heads": warmup * cost["head_step"],
        "generator": (cfg["iters"] - warmup) * cost["gan_step"] * gan_factor,
        "export": n_images * cost["trunk"] * size_factor * export_factor + 0.004 * n_images,
    }
    if cfg["k"] == AUTO:  # k-means over the range, then 3 candidate Ks x (data, reference) head trainings
        trainings = 2 * (2 * REFINE_RADIUS + 1)
        steps = head_steps(min(n_images, REFINE_SAMPLE), cfg["head_batch"])
        out["k_choice"] = cost["k_sweep"] + trainings * steps * cost["k_step"]
    return out


def describe_plan(cfg: dict[str, Any], n_images: int, device: torch.device) -> str:
    """One line for the screen: what will run, and about how long it will take."""
    est = estimate_seconds(cfg, n_images, device)
    warmup = warmup_iterations(cfg)
    total = sum(est.values())
    return (f"plan: {n_images} images, {cfg['backbone']} trunk at {cfg['backbone_size']} px, clusters by "
            f"{run_domains(cfg)}, {cfg['heads']} heads x "
            f"{warmup} updates, then {cfg['iters'] - warmup} generator iterations at {cfg['img_size']} px "
            f"(batch {cfg['batch_size']}) on {device}: about {_minutes(total)} ("
            + (f"choosing K {_minutes(est['k_choice'])}, " if "k_choice" in est else "")
            + f"features {_minutes(est['features'])}, generator {_minutes(est['generator'])}, "
            f"export {_minutes(est['export'])})")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
