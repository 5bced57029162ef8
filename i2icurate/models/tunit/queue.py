"""FIFO queue of MoCo key vectors (the negatives of TUNIT's style contrastive losses)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class StyleQueue:
    """Ring buffer holding the last ``size`` key vectors (float32) on ``device``.

    ``negatives()`` returns the filled rows, oldest first, as a fresh tensor (so later pushes never modify a tensor
    an autograd graph has saved). ``state_dict()`` / ``load_state_dict()`` restore the contents, fill count and
    write position exactly.
    """

    def __init__(self, size: int, dim: int, device: torch.device | str = "cpu"):
        if size <= 0 or dim <= 0:
            raise ValueError(f"size and dim must be positive (got {size}, {dim})")
        self.size = size
        self.dim = dim
        self.buffer = torch.zeros(size, dim, dtype=torch.float32, device=device)
        self.count = 0  # filled rows
        self.ptr = 0  # next row to write

    @property
    def device(self) -> torch.device:
        """Device the queue lives on."""
        return self.buffer.device

    def __len__(self) -> int:
        return self.count

    def negatives(self) -> Tensor:
        """The filled rows (count x dim), oldest first."""
        if self.count < self.size:
            return self.buffer[: self.count].clone()
        return torch.cat([self.buffer[self.ptr:], self.buffer[: self.ptr]])

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        """Append ``keys`` (B x dim, detached) and keep only the last ``size`` rows."""
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must be B x {self.dim} (got {tuple(keys.shape)})")
        keys = keys.detach().to(device=self.buffer.device, dtype=self.buffer.dtype)
        n = keys.shape[0]
        if n == 0:
            return
        if n >= self.size:
            self.buffer.copy_(keys[-self.size:])
            self.ptr, self.count = 0, self.size
            return
        idx = (torch.arange(n, device=self.buffer.device) + self.ptr) % self.size
        self.buffer[idx] = keys
        self.ptr = (self.ptr + n) % self.size
        self.count = min(self.count + n, self.size)

    def state_dict(self) -> dict[str, Any]:
        """Contents and positions, for checkpoints."""
        return {"buffer": self.buffer.detach().cpu().clone(), "count": self.count, "ptr": self.ptr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict()``; the buffer must have this queue's shape."""
        buf = state["buffer"]
        if tuple(buf.shape) != (self.size, self.dim):
            raise ValueError(f"queue state has shape {tuple(buf.shape)}, expected {(self.size, self.dim)}")
        self.buffer.copy_(buf.to(device=self.buffer.device, dtype=self.buffer.dtype))
        self.count = int(state["count"])
        self.ptr = int(state["ptr"])
