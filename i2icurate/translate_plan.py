"""The default translate schedule: chosen from the device, printed with a time estimate before training.

`translate` without `--preset` gives a trained model (U-GAT-IT, SRUNIT) a schedule that fits the machine:
- on a CPU: 64 px images, the model's CPU settings (`CPU_PLAN` in its module: small widths, and for U-GAT-IT twice
  the paper's learning rate) and as many iterations as fit
  CPU_BUDGET_S, from the seconds per iteration the module measured (`CPU_STEP_S`, one thread on the 2-core
  development machine, bench/RESULTS.md), scaled by the thread count. A module that also gives `CPU_BF16_STEP_S`
  trains in bf16 autocast on a CPU that computes bf16 in hardware (AVX512-BF16 or AMX), with its `CPU_BF16_PLAN`
  changes to `CPU_PLAN`, sized by that cost;
- on a CPU, where the folder's images are at least `CROP_IMG_SIZE` px and the model trains on crops (its OPTIONS
  hold `crop_size`): 128 px images trained on random 64 px crops, translated whole. A step costs what a 64 px step
  does; on OpenMoji colour -> line-art this cut KID four-fold for SRUNIT and U-GAT-IT at the same iterations
  (bench/RESULTS.md, issue 11, sessions 24–25). An explicit --img-size or --crop-size, or an option value the
  module lists in `CROP_PLAN_BLOCKED_BY` (U-GAT-IT's full generator cannot train on crops), keeps the whole-image
  plan;
- on a GPU: the model's own defaults (the paper's sizes and schedule, as `--preset full`).
Every value is an ordinary option: an explicit flag wins over the plan. TUNIT trains nothing, so it has no plan.

The measured constants are the development machine's; a CPU that is faster or slower would finish early or late. So
a new run whose iterations the plan sizes (no `--iters`) times a few steps of a throwaway copy of its model on this
machine first (`time_steps`) and fits the iterations to `--minutes` from that (`timed_schedule`); the count is then
written to the run's config, so a resumed or repeated run trains exactly as many. `--minutes` given explicitly does
the same on a GPU or over a preset.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import torch

from i2icurate.config import TRANSLATE

CPU_IMG_SIZE = 64
# where the folder's images allow it, the CPU plan translates at CROP_IMG_SIZE and trains on CPU_IMG_SIZE crops
CROP_IMG_SIZE = 128
# training time the CPU plan aims at on 2 threads: 30 minutes give SRUNIT about 8,400 iterations; 8,000 were
# what it took to beat the untranslated input on KID, FID and paired L1, 5,000 were not enough (bench/RESULTS.md)
CPU_BUDGET_S = TRANSLATE["minutes"].default * 60
MIN_ITERS, MAX_ITERS = 200, 20_000
# A whole run costs more than its timed steps (loss logging, sample grids, checkpoints, a busy machine's hiccups):
# U-GAT-IT's timed bf16 plan on two threads took 0.208 s per iteration against its timed 0.176, 1.18x (bench/RESULTS.md,
# session 21; one thread at 5,600 iterations: 1.13x).
LOOP_OVERHEAD = 1.18
TIMING_WARMUP, TIMING_STEPS = 3, 12


def thread_speedup(threads: int) -> float:
    """How much faster than one thread a step runs on `threads` (conv layers this small scale sub-linearly)."""
    return max(1, min(threads, 8)) ** 0.75


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere bf16 autocast is emulated and slow."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence the fallback
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def cpu_precision(module: ModuleType) -> str:
    """The precision of `module`'s CPU plan here: bf16 where the module measured a gain and the CPU has it."""
    return "bf16" if hasattr(module, "CPU_BF16_STEP_S") and cpu_has_native_bf16() else "fp32"


def cpu_step_seconds(module: ModuleType, precision: str) -> float:
    """The module's measured one-thread seconds per iteration of its CPU plan at `precision`."""
    if precision == "bf16" and cpu_precision(module) == "bf16":
        return module.CPU_BF16_STEP_S
    return module.CPU_STEP_S


def trains_on_crops(module: ModuleType, source_side: int | None, explicit: dict[str, Any] | None = None) -> bool:
    """Whether the CPU plan of `module` trains on CPU_IMG_SIZE crops of CROP_IMG_SIZE images: the model can, the
    folder's typical image (`source_side`, its shorter side) is that large, and no explicit option says otherwise."""
    if "crop_size" not in {option.name for option in module.OPTIONS}:
        return False
    if source_side is None or source_side < CROP_IMG_SIZE:
        return False
    explicit = explicit or {}
    if explicit.get("img_size") is not None or explicit.get("crop_size") is not None:
        return False
    blocked_by = getattr(module, "CROP_PLAN_BLOCKED_BY", {})
    return not any(explicit.get(name) in values for name, values in blocked_by.items())


def translate_plan(module: ModuleType, device: torch.device, threads: int | None = None,
                   minutes: float | None = None, source_side: int | None = None,
                   explicit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Option values of the default schedule of translator `module` on `device` ({} when it trains nothing), its
    iterations estimated to fill `minutes` (default: the CPU budget) until a run times its own steps. `source_side`:
    the median shorter side of the folder's images (None: unknown, whole-image training); `explicit`: the options
    given on the command line (see `trains_on_crops`)."""
    if not module.TRAINS or device.type == "cuda":
        return {}
    threads = threads or torch.get_num_threads()
    precision = cpu_precision(module)
    plan = {"img_size": CPU_IMG_SIZE, **module.CPU_PLAN}
    if trains_on_crops(module, source_side, explicit):
        plan.update(img_size=CROP_IMG_SIZE, crop_size=CPU_IMG_SIZE)
    if precision == "bf16":
        plan.update(precision="bf16", **getattr(module, "CPU_BF16_PLAN", {}))
    step_s = cpu_step_seconds(module, precision) / thread_speedup(threads)
    budget_s = CPU_BUDGET_S if minutes is None else minutes * 60
    plan["iters"] = int(min(MAX_ITERS, max(MIN_ITERS, round(budget_s / step_s, -2))))
    plan.update(log_every=25, **_intervals(plan["iters"]))
    return plan


def _intervals(iters: int) -> dict[str, int]:
    every = max(100, iters // 10)
    return {"sample_every": every, "ckpt_every": every}


def wants_timing(options: dict[str, Any], preset: str | None, device: torch.device,
                 module: ModuleType, distributed: bool) -> bool:
    """Whether a new run sizes its iterations by timing steps here: a trained model, no explicit `--iters`, and
    either the CPU plan (no preset) or an explicit `--minutes`. Not under torchrun, whose ranks must agree."""
    if not module.TRAINS or distributed or options.get("iters") is not None:
        return False
    return options.get("minutes") is not None or (preset is None and device.type == "cpu")


def time_steps(trainer: Any, device: torch.device, warmup: int = TIMING_WARMUP, steps: int = TIMING_STEPS) -> float:
    """Median seconds of one training step of `trainer` after `warmup` untimed ones. The steps train it: give a
    throwaway copy."""
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        trainer.step(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def timed_schedule(step_s: float, minutes: float, options: dict[str, Any]) -> dict[str, Any]:
    """The iterations that fit `minutes` at `step_s` per step (loop overhead included) and the sample and checkpoint
    intervals that go with them (where not given explicitly); `timed_step_s` records what was measured."""
    fit = minutes * 60 / (step_s * LOOP_OVERHEAD)
    iters = int(min(MAX_ITERS, max(10, round(fit, -2) if fit >= 1000 else round(fit, -1))))
    schedule: dict[str, Any] = {"iters": iters, "timed_step_s": round(step_s, 4)}
    schedule.update({k: v for k, v in _intervals(iters).items() if options.get(k) is None})
    return schedule


def trained_side(cfg: dict[str, Any]) -> int:
    """The side of the images a step trains on: the crop's where the model trains on crops, else `img_size`."""
    return cfg.get("crop_size") or cfg["img_size"]


def seconds_per_iteration(module: ModuleType, cfg: dict[str, Any], threads: int) -> float | None:
    """Rough CPU seconds per iteration of a resolved config: the module's measured plan cost scaled by pixels and
    batch size (not by widths: a guide, not a promise)."""
    if not module.TRAINS:
        return None
    scale = (trained_side(cfg) / CPU_IMG_SIZE) ** 2 * cfg["batch_size"] / module.CPU_PLAN["batch_size"]
    return cpu_step_seconds(module, cfg["precision"]) * scale / thread_speedup(threads)


def describe_translate_plan(module_name: str, cfg: dict[str, Any], device: torch.device, threads: int,
                            module: ModuleType) -> str:
    """One line for the screen: what will train, at what size, and about how long it will take."""
    if not module.TRAINS:
        return module.describe_plan(cfg, device)
    settings = ", ".join(f"{name} {cfg[name]}" for name in module.CPU_PLAN if name != "batch_size")
    crop = f", trained on {cfg['crop_size']} px crops" if cfg.get("crop_size") else ""
    line = (f"plan: {module_name} at {cfg['img_size']} px{crop} ({settings}, batch {cfg['batch_size']}), "
            f"{cfg['iters']} iterations on {device}")
    if device.type == "cuda":
        return line
    if cfg["precision"] == "bf16":
        line += " in bf16"
    timed = cfg.get("timed_step_s")
    step_s = timed * LOOP_OVERHEAD if timed else seconds_per_iteration(module, cfg, threads)
    total = cfg["iters"] * step_s
    when = f"{total / 60:.0f} min" if total >= 90 else f"{total:.0f} s"
    how = "timed on this machine" if timed else "estimated"
    return (f"{line} with {threads} thread{'s' * (threads != 1)}: about {when} "
            f"({step_s:.2f} s per iteration, {how})")
