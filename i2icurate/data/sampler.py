"""Deterministic, resumable batch sampling over a decoded image cache."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
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
    """Turns sampled indices into uint8 batches on the training device.

    Distributed runs: every rank draws the same global batch and keeps its `shard` (rank, world) of it, so the
    ranks see disjoint images and the sampler state is the same everywhere. On CUDA the next batch is read and
    pinned by a background thread while the current step runs; `state_dict` is the sampler state before that
    look-ahead, so a resume draws exactly the batches a non-stop run would.
    """

    def __init__(self, images: np.ndarray, sampler: EpochSampler | MixedSampler, device: torch.device,
                 shard: tuple[int, int] = (0, 1), prefetch: bool | None = None) -> None:
        self.images, self.sampler, self.device = images, sampler, device
        self.rank, self.world = shard
        self.prefetch = device.type == "cuda" if prefetch is None else prefetch
        self._pool: ThreadPoolExecutor | None = None
        self._pending: tuple[dict[str, Any], np.ndarray, Future[torch.Tensor]] | None = None

    def _draw(self) -> np.ndarray:
        return self.sampler.next_indices()[self.rank :: self.world]

    def _read(self, idx: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        return batch.pin_memory() if self.device.type == "cuda" else batch

    def _submit(self) -> tuple[dict[str, Any], np.ndarray, Future[torch.Tensor]]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="i2icurate-batches")
        state = self.sampler.state_dict()
        idx = self._draw()
        return state, idx, self._pool.submit(self._read, idx)

    def next(self) -> tuple[np.ndarray, torch.Tensor]:
        """The next batch's indices and its (B, H, W, 3) uint8 tensor on the device."""
        if not self.prefetch:
            idx = self._draw()
            return idx, self._read(idx).to(self.device, non_blocking=True)
        if self._pending is None:
            self._pending = self._submit()
        _, idx, future = self._pending
        host = future.result()
        self._pending = self._submit()
        return idx, host.to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, Any]:
        """The sampler state of the next batch `next` will return."""
        return self._pending[0] if self._pending is not None else self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a `state_dict` (a pending look-ahead is dropped)."""
        if self._pending is not None:
            self._pending[2].result()
            self._pending = None
        self.sampler.load_state_dict(state)
