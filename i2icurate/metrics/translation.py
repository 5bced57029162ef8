"""Translation quality of a translate run: FID and KID between the written outputs and the target domain."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from i2icurate.data.imageio import decode_to_array
from i2icurate.runs import write_json


def evaluate_outputs(run: Path, out_dir: Path, rel_paths: list[str], target: np.ndarray, size: int,
                     device: torch.device, console: Console) -> dict[str, float]:
    """Read the translated PNGs back, score them against the target-domain images, write metrics.json."""
    from i2icurate.metrics.fid import fid_kid

    outputs = np.stack([decode_to_array(out_dir / PurePosixPath(p).with_suffix(".png"), size, 10**9)
                        for p in rel_paths])
    with console.status(f"FID/KID: {len(outputs)} translations vs {len(target)} target images"):
        scores = fid_kid(outputs, np.array(target), device)
    write_json(run / "metrics.json", scores)
    table = Table(title="translation quality")
    for col in ("FID", "KID×100", "translations", "target images"):
        table.add_column(col, justify="right")
    table.add_row(f"{scores['fid']:.2f}", f"{100 * scores['kid']:.2f} ± {100 * scores['kid_std']:.2f}",
                  str(scores["n_a"]), str(scores["n_b"]))
    console.print(table)
    return scores
