"""What a run records while it trains: TensorBoard events and a stats.jsonl with the same scalars."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from i2icurate.runs import append_jsonl

STATS = "stats.jsonl"
TENSORBOARD = "tb"


class RunLogger:
    """Scalars go to TensorBoard and to stats.jsonl (one JSON object per logged step); image grids to TensorBoard."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported late: tensorboard is slow to import

        self.run_dir = run_dir
        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD))
        self.start = time.time()

    def scalars(self, step: int, values: dict[str, float], extra: dict[str, float] | None = None) -> None:
        """Log training scalars (losses, rates) for one step."""
        for key, value in {**values, **(extra or {})}.items():
            self.writer.add_scalar(key, value, step)
        record = {"step": step, "time": round(time.time() - self.start, 3), **values, **(extra or {})}
        append_jsonl(self.run_dir / STATS, record)

    def images(self, step: int, tag: str, grid: torch.Tensor) -> None:
        """Log a (3, H, W) image grid in [0, 1]."""
        self.writer.add_image(tag, grid, step)

    def flush(self) -> None:
        """Push pending events to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()
