"""Seconds per iteration of each translator's CPU plan (translate_plan.py), per thread count: the `CPU_STEP_S` figures.

The plan sizes a CPU run from each module's `CPU_STEP_S` (one thread; `CPU_BF16_STEP_S` in bf16 where the CPU has
it) and `thread_speedup`; this measures them on
the machine at hand, with real images (animal-mnist silhouettes as domain A, MNIST digits as domain B, upsampled to
the plan's 64 px; the cost does not depend on what the images show). Run it alone on the machine.

    python bench/translate_plan_speed.py                   # 1 and 2 threads, fp32 and bf16, U-GAT-IT and SRUNIT
    python bench/translate_plan_speed.py --threads 1,2,4 --steps 100
"""

from __future__ import annotations

import time

import click
import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from i2icurate.commands.translate import resolve_translate
from i2icurate.data.demo import load_animal_mnist, load_mnist_5k
from i2icurate.translate_plan import (
    CPU_IMG_SIZE,
    cpu_has_native_bf16,
    cpu_precision,
    cpu_step_seconds,
    thread_speedup,
    translate_plan,
)
from i2icurate.translators import base


def _rgb(images: np.ndarray, n: int, size: int) -> np.ndarray:
    """The first `n` grey images as (n, size, size, 3) uint8."""
    return np.stack([np.asarray(Image.fromarray(im).convert("RGB").resize((size, size), Image.BILINEAR))
                     for im in images[:n]])


@click.command()
@click.option("--models", default="ugatit,srunit", show_default=True, help="Comma-separated trained translators.")
@click.option("--threads", "thread_counts", default="1,2", show_default=True, help="Comma-separated thread counts.")
@click.option("--precisions", default="fp32,bf16", show_default=True,
              help="Comma-separated; bf16 rows only where the CPU computes bf16 natively.")
@click.option("--steps", type=int, default=60, show_default=True, help="Timed iterations per row.")
@click.option("--warmup", type=int, default=10, show_default=True, help="Untimed iterations per row.")
def main(models: str, thread_counts: str, precisions: str, steps: int, warmup: int) -> None:
    """Print seconds per iteration of each plan, the speed-up over one fp32 thread and the plan's assumption."""
    domain_a = _rgb(load_animal_mnist()[0], 200, CPU_IMG_SIZE)
    domain_b = _rgb(load_mnist_5k()[0], 200, CPU_IMG_SIZE)
    table = Table(title=f"translate's CPU plan at {CPU_IMG_SIZE} px: seconds per iteration (* = the plan's precision)")
    for col in ("model", "precision", "threads", "s / iteration", "speed-up", "plan assumes", "plan iterations"):
        table.add_column(col, justify="left" if col == "model" else "right")
    cpu = torch.device("cpu")
    wanted = [p.strip() for p in precisions.split(",") if p.strip()]
    if not cpu_has_native_bf16():
        wanted = [p for p in wanted if p != "bf16"]
    for name in (m.strip() for m in models.split(",") if m.strip()):
        module = base.load(name)
        one_thread = None
        for precision in wanted:
            for threads in (int(t) for t in thread_counts.split(",")):
                torch.set_num_threads(threads)
                plan = translate_plan(module, cpu, threads=threads)
                cfg = resolve_translate(name, None, {"precision": precision}, plan=plan)
                translator = module.Translator(cfg, domain_a, domain_b, cpu)
                for i in range(warmup):
                    translator.step(i)
                started = time.perf_counter()
                for i in range(warmup, warmup + steps):
                    translator.step(i)
                seconds = (time.perf_counter() - started) / steps
                one_thread = one_thread or (seconds if threads == 1 else None)
                speedup = f"{one_thread / seconds:.2f}" if one_thread else "—"
                planned = precision == cpu_precision(module)
                table.add_row(name, precision + " *" * planned, str(threads), f"{seconds:.3f}", speedup,
                              f"{cpu_step_seconds(module, precision) / thread_speedup(threads):.3f}",
                              str(plan["iters"]) if planned else "—")
    Console().print(table)


if __name__ == "__main__":
    main()
