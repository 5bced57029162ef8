"""Training throughput of TUNIT, U-GAT-IT and SRUNIT, one optimisation at a time.

Every figure is end to end: batches come from a uint8 cache of real images (animal-mnist silhouettes resampled to the
training size) through the trainers' own samplers and on-device augmentation, exactly as `discover` and `translate`
run. For each row the step is warmed up (cuDNN autotuning, torch.compile), then timed; the table gives it/s, img/s,
peak GPU memory, and the achieved fraction of the GPU's dense bf16 peak from FLOPs counted by
torch.utils.flop_counter on one eager step (lazy R1 rows count the R1 FLOPs once per N steps).

    python bench/train_speed.py                                   # GPU: TUNIT 128 px batch 32, U-GAT-IT/SRUNIT 256 px
    python bench/train_speed.py --device cpu --preset tiny --img-size 32 --iters 5 --warmup 2   # CPU smoke run
    python bench/train_speed.py --models tunit --rows 1-4 --json-out eager.json   # the eager rows of the ladder

With --json-out the file is rewritten after every row ("complete": false until the last), so a run stopped early
still leaves the rows it finished.

The TUNIT reference figure (official implementation, same GPU kind) is in ../shared/ANCHORS.md: 70.8 img/s at
128 px, batch 32, on an H100.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from i2icurate.commands.translate import resolve_translate
from i2icurate.config import resolve
from i2icurate.data.demo import load_animal_mnist
from i2icurate.engines.tunit import TunitTrainer, resolve_device
from i2icurate.translators import base

REFERENCE_IMG_S = {(128, 32): 70.8, (128, 64): 77.0, (256, 16): 26.7}  # ../shared/ANCHORS.md, H100

# Dense bf16 tensor-core peaks (TFLOP/s) by device-name fragment; --peak-tflops overrides.
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100 PCIe": 756.0, "H100": 989.4, "A100": 312.0, "L40S": 362.0, "A10": 125.0}

BASE = {"precision": "fp32", "channels_last": "off", "fused_optim": "off", "compile": "off", "r1_every": 1}
TUNIT_LADDER: list[tuple[str, dict[str, Any]]] = [
    ("fp32 (TF32 convs), eager: reference precision", {}),
    ("+ bf16 autocast", {"precision": "bf16"}),
    ("+ channels_last", {"channels_last": "on"}),
    ("+ fused / multi-tensor optimisers", {"fused_optim": "on"}),
    ("+ torch.compile (E, G, frozen D)", {"compile": "on"}),
    ("+ lazy R1 every 16 steps", {"r1_every": 16}),
]
TRANSLATOR_LADDER: list[tuple[str, dict[str, Any]]] = [
    ("fp32 (TF32 convs), eager", {"precision": "fp32"}),
    ("+ bf16 autocast", {"precision": "bf16"}),
]


def real_images(n: int, size: int, offset: int = 0) -> np.ndarray:
    """`n` animal-mnist silhouettes (N, size, size, 3) uint8, resampled with PIL's bicubic filter."""
    images, _, _ = load_animal_mnist()
    picked = images[offset : offset + n]
    out = np.empty((len(picked), size, size, 3), dtype=np.uint8)
    for i, im in enumerate(picked):
        out[i] = np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC).convert("RGB"))
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _GlobalOnly:
    """Stands in for FlopCounterMode's module tracker, whose backward hooks break R1's autograd.grad call; every
    FLOP is then attributed to 'Global', which is all this benchmark reads."""

    parents = ("Global",)

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def count_flops(step: Callable[[int], Any], i: int) -> int:
    """FLOPs of one call of `step(i)` (forward and backward, as torch's FLOP counter sees them)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        step(i)
    return int(counter.get_total_flops())


def time_steps(step: Callable[[int], Any], first: int, warmup: int, iters: int, device: torch.device) -> dict:
    """Warm up, then time `iters` calls; returns it/s and peak GPU memory (GiB, None on CPU)."""
    for j in range(warmup):
        step(first + j)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for j in range(iters):
        step(first + warmup + j)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"it_s": iters / seconds, "peak_gib": peak}


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def tunit_flops(cfg: dict[str, Any], images: np.ndarray) -> tuple[int, int]:
    """Algorithmic FLOPs of one eager TUNIT step with R1 and of one without (same networks and batch)."""
    eager = {**cfg, "compile": "off"}
    trainer = TunitTrainer(eager, images)
    with_r1 = count_flops(trainer.step, 0)
    trainer.speed = dataclasses.replace(trainer.speed, r1_every=2)
    without_r1 = count_flops(trainer.step, 1)
    del trainer
    _free()
    return with_r1, without_r1


def bench_tunit(preset: str, img_size: int, batch: int, warmup: int, iters: int, device: str,
                rows: list[tuple[str, dict[str, Any]]],
                on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One row per (label, options); every timed step is a full post-warm-up TUNIT iteration. `on_row` is called
    with each row as soon as it is measured."""
    images = real_images(max(4 * batch, 512), img_size)
    results, flops = [], None
    for label, options in rows:
        cfg = resolve("discover", preset, img_size=img_size, batch_size=batch, device=device, iters=10**6,
                      warmup_frac=0.0, ema_g_delay=0.0, **{**BASE, **options})
        if flops is None:
            flops = tunit_flops(cfg, images)
        trainer = TunitTrainer(cfg, images)
        timing = time_steps(trainer.step, 0, warmup, iters, trainer.device)
        per_step = flops[1] + (flops[0] - flops[1]) / trainer.speed.r1_every
        results.append({"model": "tunit", "row": label, "img_size": img_size, "batch": batch, **timing,
                        "img_s": timing["it_s"] * batch, "tflops": per_step * timing["it_s"] / 1e12})
        if on_row:
            on_row(results[-1])
        del trainer
        _free()
    return results


def bench_translator(model: str, preset: str, img_size: int, batch: int, warmup: int, iters: int, device: str,
                     rows: list[tuple[str, dict[str, Any]]],
                     on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """U-GAT-IT or SRUNIT steps on two real domains (two animal-mnist classes' worth of images); `on_row` as in
    bench_tunit."""
    a, b = real_images(256, img_size, 0), real_images(256, img_size, 5000)
    results, flops = [], None
    for label, change in rows:
        cfg = resolve_translate(model, preset, {"img_size": img_size, "batch_size": batch, "device": device,
                                                "iters": 10**6, **change})
        dev = resolve_device(cfg["device"])
        torch.manual_seed(cfg["seed"])
        translator = base.load(model).Translator(cfg, a, b, dev)
        if flops is None:
            flops = count_flops(translator.step, 0)
        timing = time_steps(translator.step, 1, warmup, iters, dev)
        results.append({"model": model, "row": label, "img_size": img_size, "batch": batch, **timing,
                        "img_s": timing["it_s"] * batch, "tflops": flops * timing["it_s"] / 1e12})
        if on_row:
            on_row(results[-1])
        del translator
        _free()
    return results


def parse_rows(text: str | None) -> set[int] | None:
    """"1-4" or "1,2,5" -> the 1-based ladder row numbers; None -> None (all rows)."""
    if not text:
        return None
    numbers: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        numbers.update(range(int(first), int(last or first) + 1))
    return numbers


def bf16_peak(device: torch.device, override: float | None) -> float | None:
    """The device's dense bf16 peak in TFLOP/s, when known."""
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


@click.command()
@click.option("--models", default="tunit,ugatit,srunit", show_default=True, help="Comma-separated.")
@click.option("--preset", default="full", show_default=True, help="Network sizes: full (paper) or tiny.")
@click.option("--img-size", type=int, default=None, help="Override: TUNIT 128, translators 256 by default.")
@click.option("--batch-size", type=int, default=None, help="Override: TUNIT 32, translators 1 by default.")
@click.option("--iters", type=int, default=60, show_default=True, help="Timed iterations per row.")
@click.option("--warmup", type=int, default=15, show_default=True, help="Untimed iterations per row.")
@click.option("--device", default="auto", show_default=True)
@click.option("--only", default=None, help="TUNIT: run only the ladder rows whose label contains this text (the "
              "options of the rows above still apply).")
@click.option("--rows", "row_numbers", default=None, help="TUNIT: run only these ladder rows, 1-based, e.g. 1-4 or "
              "5,6 (the options of the rows above still apply).")
@click.option("--peak-tflops", type=float, default=None, help="Dense bf16 peak of the device, if not known.")
@click.option("--json-out", type=click.Path(), default=None, help="Write the rows as JSON (rewritten after each row).")
def main(models, preset, img_size, batch_size, iters, warmup, device, only, row_numbers, peak_tflops,
         json_out) -> None:
    """Print img/s, peak memory and the fraction of bf16 peak for each optimisation step."""
    console = Console(width=180)
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = bf16_peak(dev, peak_tflops)
    wanted = parse_rows(row_numbers)
    results: list[dict[str, Any]] = []

    def save(complete: bool) -> None:
        if json_out:
            Path(json_out).write_text(json.dumps({"device": name, "preset": preset, "bf16_peak_tflops": peak,
                                                  "complete": complete, "rows": results}, indent=2))

    def on_row(row: dict[str, Any]) -> None:
        results.append(row)
        save(complete=False)

    for model in models.split(","):
        if model == "tunit":
            rows, cumulative = [], {}
            for number, (label, change) in enumerate(TUNIT_LADDER, 1):  # each row keeps the options of those above
                cumulative = {**cumulative, **change}
                if (only is None or only in label) and (wanted is None or number in wanted):
                    rows.append((label, cumulative))
            bench_tunit(preset, img_size or 128, batch_size or 32, warmup, iters, device, rows, on_row)
        else:
            bench_translator(model, preset, img_size or 256, batch_size or 1, warmup, iters, device,
                             TRANSLATOR_LADDER, on_row)

    table = Table(title=f"training throughput on {name} ({preset} networks, {iters} timed iterations per row)")
    for col in ("model", "size", "batch", "optimisation", "it/s", "img/s", "vs reference", "peak GiB",
                "TFLOP/s", "of bf16 peak"):
        table.add_column(col, justify="left" if col in ("model", "optimisation") else "right")
    for r in results:
        ref = REFERENCE_IMG_S.get((r["img_size"], r["batch"])) if r["model"] == "tunit" and preset == "full" else None
        table.add_row(
            r["model"], str(r["img_size"]), str(r["batch"]), r["row"], f"{r['it_s']:.2f}", f"{r['img_s']:.1f}",
            f"{r['img_s'] / ref:.2f}x" if ref else "-",
            f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-",
            f"{r['tflops']:.1f}", f"{100 * r['tflops'] / peak:.1f} %" if peak else "-",
        )
    console.print(table)
    save(complete=True)


if __name__ == "__main__":
    main()
