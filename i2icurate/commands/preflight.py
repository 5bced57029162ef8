"""Checks a discover run passes before it creates its run folder, and the removal of a run that never started."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from i2icurate.data.scan import ScanResult, scan_folder
from i2icurate.engines.checkpoint import LAST
from i2icurate.errors import UserError


def check_k(k: int | str, images: int, root: Path) -> None:
    """Refuse more clusters than images: most clusters would stay empty after the whole training (-k auto clips its
    range to the folder instead)."""
    if isinstance(k, int) and k > images:
        raise UserError(f"-k {k} asks for more clusters than the {images} image(s) in {root}; "
                        f"use -k {images} or fewer (or add images)")


def warn_k(k: int | str, images: int, console: Console) -> None:
    """Warn when there are fewer than two images per cluster on average."""
    if isinstance(k, int) and 2 * k > images:
        console.print(f"[yellow]-k {k} for {images} images: fewer than 2 images per cluster on average, so many "
                      "clusters will be tiny or empty[/]", highlight=False)


def check_candidates(root: Path, k: int | str, scan: ScanResult | None = None) -> ScanResult:
    """Scan the image folder (unless `scan` is its scan already) and refuse it before any run folder exists: no
    images, one image, or K > images."""
    scan = scan or scan_folder(root)
    if len(scan.files) < 2:
        raise UserError(f"only {len(scan.files)} image in {root}; discover needs at least 2")
    check_k(k, len(scan.files), root)
    return scan


def discard_unstarted(run: Path | None) -> None:
    """Delete a new run folder that has no checkpoint yet (nothing in it can be resumed or reviewed)."""
    if run is not None and run.is_dir() and not (run / LAST).exists():
        shutil.rmtree(run, ignore_errors=True)


@contextlib.contextmanager
def discard_on_failure(run: Path, new: bool = True) -> Iterator[None]:
    """Remove `run` (when `new` and it has no checkpoint) if the body fails, so no dead-end run folder is left."""
    try:
        yield
    except Exception:
        if new:
            discard_unstarted(run)
        raise

