"""Helpers for tests that run the CLI in this process on small real image folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from i2icurate.cli import main

# Toy discover flags for a dozen images: the tiny networks, a handful of iterations, the GAN phase half-way.
TOY = ["--preset", "tiny", "--batch-size", "8", "--warmup-frac", "0.5", "--ema-g-delay", "0.1", "--workers", "1",
       "--log-every", "2", "--sample-every", "4", "--ckpt-every", "5", "--ema-beta", "0.9"]


def copy_images(animal_folder: Path, target: Path, n: int) -> Path:
    """The first `n` real animal images, one from each class in turn, copied flat into `target`."""
    classes = sorted(p for p in animal_folder.iterdir() if p.is_dir())
    files = [sorted(c.glob("*.png"))[i] for i in range(n) for c in classes][:n]
    target.mkdir(parents=True)
    for src in files:
        shutil.copy(src, target / f"{src.parent.name}_{src.name}")
    return target


def strict_json(text: str) -> object:
    """json.loads that refuses NaN, Infinity and -Infinity (not JSON, though Python writes them by default)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in this process: exit code (0 when it returned), stdout and stderr; never a traceback."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return code, out.out, out.err


def run_folders(project: Path) -> list[Path]:
    """The discover run folders under a project."""
    parent = project / "discover"
    return sorted(parent.iterdir()) if parent.is_dir() else []


def ctrl_c_after_step(monkeypatch, step: int) -> None:
    """Make TunitTrainer send this process SIGINT (as Ctrl-C does) right after iteration `step`."""
    import os
    import signal

    from i2icurate.engines.tunit import TunitTrainer

    original_step = TunitTrainer.step

    def step_then_ctrl_c(self, i):
        out = original_step(self, i)
        if i == step:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(TunitTrainer, "step", step_then_ctrl_c)
