"""The training loop shared by every trainer: progress bar, logging, periodic checkpoints and clean interrupts.

A trainer provides `step(i) -> dict of floats`, `state_dict()`, `load_state_dict()` and `samples() -> dict of
(3, H, W) grids`. The loop owns everything around it, so a new model only writes its own step.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from i2icurate.engines.checkpoint import LAST, save_checkpoint
from i2icurate.engines.distributed import SINGLE, Dist, any_rank
from i2icurate.engines.logger import STATS, RunLogger
from i2icurate.runs import write_text


class Trainer(Protocol):
    """What the loop needs from a model's trainer."""

    step_count: int

    def step(self, i: int) -> dict[str, float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def samples(self) -> dict[str, Any]: ...


class Interrupted(Exception):
    """Raised after a checkpoint was saved because the user pressed Ctrl-C (or the job got SIGTERM)."""


@contextmanager
def _graceful_stop(grace_s: float = 0.0) -> Iterator[dict[str, bool]]:
    """Turn the first SIGINT/SIGTERM into a flag the loop checks between steps; a second one stops at once.

    Signals within `grace_s` of the first count as the same request: under torchrun one Ctrl-C reaches each worker
    twice, from the terminal and forwarded by the launcher.
    """
    flag = {"stop": False}
    first = [0.0]
    previous = {}

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        if flag["stop"]:
            if time.monotonic() - first[0] < grace_s:
                return
            raise KeyboardInterrupt
        flag["stop"] = True
        first[0] = time.monotonic()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def trim_stats(run_dir: Path, step: int) -> None:
    """Drop stats lines written after `step` by a run that was killed before its next checkpoint."""
    path = run_dir / STATS
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    write_text(path, "".join(line + "\n" for line in kept))


def _loss_text(values: dict[str, float]) -> str:
    return " ".join(f"{k.split('/')[-1]} {v:.2f}" for k, v in values.items() if k.startswith("loss/"))


def run_loop(
    trainer: Trainer,
    run_dir: Path,
    total: int,
    log_every: int,
    sample_every: int,
    ckpt_every: int,
    console: Console,
    description: str = "training",
    dist: Dist = SINGLE,
) -> None:
    """Run `trainer.step` from `trainer.step_count` to `total`; raises Interrupted after saving on Ctrl-C.

    Under torchrun every rank runs the loop; rank 0 alone shows progress, logs and writes checkpoints, and a stop
    request seen by any rank stops all of them after the same step.
    """
    main = dist.is_main
    logger = RunLogger(run_dir) if main else None
    start = trainer.step_count
    if main:
        trim_stats(run_dir, start)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[losses]}"),
    )
    last_saved = start
    tick, tick_step = time.perf_counter(), start
    try:
        grace_s = 5.0 if dist.enabled else 0.0
        with _graceful_stop(grace_s) as flag, Progress(*columns, console=console, disable=not main) as progress:
            task = progress.add_task(description, total=total, completed=start, rate="", losses="")
            for i in range(start, total):
                values = trainer.step(i)
                trainer.step_count = i + 1
                done = i + 1
                if main and (done % log_every == 0 or done == total):
                    now = time.perf_counter()
                    rate = (done - tick_step) / max(now - tick, 1e-9)
                    tick, tick_step = now, done
                    logger.scalars(done, values, {"speed/it_per_s": rate})
                    progress.update(task, rate=f"{rate:.2f} it/s", losses=_loss_text(values))
                if main and (done % sample_every == 0 or done == total):
                    for tag, grid in trainer.samples().items():
                        logger.images(done, tag, grid)
                if done % ckpt_every == 0 or done == total:
                    _save(trainer, run_dir, main)
                    last_saved = done
                progress.update(task, completed=done)
                if any_rank(dist, flag["stop"]):
                    break
        if trainer.step_count < total:
            if last_saved != trainer.step_count:
                _save(trainer, run_dir, main)
            raise Interrupted(f"stopped at iteration {trainer.step_count}/{total}; checkpoint saved")
    finally:
        if logger is not None:
            logger.close()


def _save(trainer: Trainer, run_dir: Path, main: bool) -> None:
    state = trainer.state_dict()  # on every rank: distributed trainers gather per-rank state here
    if main:
        save_checkpoint(run_dir / LAST, state)


def train_run(trainer: Trainer, run_dir: Path, cfg: dict[str, Any], console: Console, description: str,
              resume_command: str, dist: Dist = SINGLE) -> None:
    """`run_loop` with a run's logging options; an interruption names `resume_command` to continue with.

    Under torchrun only rank 0 reports the interruption; the other ranks leave with exit status 130.
    """
    try:
        run_loop(trainer, run_dir, cfg["iters"], cfg["log_every"], cfg["sample_every"], cfg["ckpt_every"], console,
                 description=description, dist=dist)
    except Interrupted as exc:
        if not dist.is_main:
            raise SystemExit(130) from None
        raise Interrupted(f"{exc}; continue with `{resume_command}`") from None
