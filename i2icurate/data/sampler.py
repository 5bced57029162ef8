"""Deterministic, resumable batch sampling over a decoded image cache."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class EpochSampler:
    """Draws batches without replacement, reshuffling each pass; its whole state is checkpointable.

    `pool` restricts sampling to those indices (e.g. leaving out images a reviewer excluded).
    """

    def __init__(self, n: int, batch_size: int, seed: int, pool: np.ndarray | None = None) -> None:
        self.pool = torch.as_tensor(np.arange(n) if pool is None else pool, dtype=torch.long)
        self.n, self.batch_size = len(self.pool), batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(self.n, generator=self.gen)
        self.pos = 0

    def next_indices(self) -> np.ndarray:
        """Sorted indices of the next batch (sorted so a memory-mapped cache is read in file order)."""
        if self.pos + self.batch_size > self.n:
            self.order = torch.randperm(self.n, generator=self.gen)
            self.pos = 0
        idx = self.pool[self.order[self.pos : self.pos + self.batch_size]]
        self.pos += self.batch_size
        return np.sort(idx.numpy())

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the exact same sequence of batches."""
        return {"gen": self.gen.get_state(), "order": self.order.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from `state_dict`."""
        self.gen.set_state(state["gen"])
        self.order, self.pos = state["order"].clone(), int(state["pos"])


class MixedSampler:
    """Every batch = `batch_size - labelled` images from `pool` plus `labelled` from the labelled images.

    Semi-supervised runs use it so that each iteration sees labelled images even when only a few percent are labelled
    (the reference alternates whole labelled and unlabelled iterations instead).
    """

    def __init__(self, pool: np.ndarray, labelled: np.ndarray, batch_size: int, n_labelled: int, seed: int) -> None:
        self.rest = EpochSampler(0, batch_size - n_labelled, seed, pool=pool)
        self.labelled = EpochSampler(0, n_labelled, seed + 100, pool=labelled)

    def next_indices(self) -> np.ndarray:
        """Unlabelled-pool indices, then labelled ones (each part sorted)."""
        return np.concatenate([self.rest.next_indices(), self.labelled.next_indices()])

    def state_dict(self) -> dict[str, Any]:
        """Both samplers' states."""
        return {"rest": self.rest.state_dict(), "labelled": self.labelled.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from `state_dict`."""
        self.rest.load_state_dict(state["rest"])
        self.labelled.load_state_dict(state["labelled"])


class BatchSource:
    """Turns sampled indices into uint8 batches on the training device (pinned host copies on CUDA)."""

    def __init__(self, images: np.ndarray, sampler: EpochSampler | MixedSampler, device: torch.device) -> None:
        self.images, self.sampler, self.device = images, sampler, device

    def next(self) -> tuple[np.ndarray, torch.Tensor]:
        """The next batch's indices and its (B, H, W, 3) uint8 tensor on the device."""
        idx = self.sampler.next_indices()
        batch = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        if self.device.type == "cuda":
            batch = batch.pin_memory().to(self.device, non_blocking=True)
        return idx, batch
