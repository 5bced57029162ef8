"""Batched inference of a trained guiding network and generator over the decoded image cache."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from i2icurate.data.augment import from_signed_u8


def _to_input(u8: np.ndarray, device: torch.device) -> torch.Tensor:
    # np.array copies: the cache is a read-only memmap and torch wants writable memory
    return torch.from_numpy(np.array(u8)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def embed(
    guiding: nn.Module,
    images: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, K) and style codes (N, D) of every cached image, in cache order."""
    guiding.eval()
    probs, styles = [], []
    for start in range(0, len(images), batch_size):
        logits, style = guiding(_to_input(images[start : start + batch_size], device))
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        styles.append(style.float().cpu().numpy())
        if progress is not None:
            progress(min(start + batch_size, len(images)))
    return np.concatenate(probs).astype(np.float32), np.concatenate(styles).astype(np.float32)


@torch.no_grad()
def translate_to_styles(
    generator: nn.Module, sources: np.ndarray, styles: np.ndarray, device: torch.device
) -> np.ndarray:
    """Translate each source (R, S, S, 3) uint8 with each style (K, D): returns (R, K, S, S, 3) uint8."""
    generator.eval()
    x = _to_input(sources, device)
    content = generator.encode(x)
    style = torch.from_numpy(styles).to(device)
    rows = []
    for r in range(len(sources)):
        c = content[r : r + 1].expand(len(styles), *content.shape[1:])
        rows.append(from_signed_u8(generator.decode(c, style)).cpu().numpy())
    return np.stack(rows)
