"""Deterministic, resumable batch sampling over a decoded image cache."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class EpochSampler:
    """Draws batches without replacement, reshuffling each pass; its whole state is checkpointable."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(n, generator=self.gen)
        self.pos = 0

    def next_indices(self) -> np.ndarray:
        """Sorted indices of the next batch (sorted so a memory-mapped cache is read in file order)."""
        if self.pos + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.gen)
            self.pos = 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return np.sort(idx.numpy())

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the exact same sequence of batches."""
        return {"gen": self.gen.get_state(), "order": self.order.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from `state_dict`."""
        self.gen.set_state(state["gen"])
        self.order, self.pos = state["order"].clone(), int(state["pos"])


class BatchSource:
    """Turns sampled indices into uint8 batches on the training device (pinned host copies on CUDA)."""

    def __init__(self, images: np.ndarray, sampler: EpochSampler, device: torch.device) -> None:
        self.images, self.sampler, self.device = images, sampler, device

    def next(self) -> tuple[np.ndarray, torch.Tensor]:
        """The next batch's indices and its (B, H, W, 3) uint8 tensor on the device."""
        idx = self.sampler.next_indices()
        batch = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        return idx, batch
