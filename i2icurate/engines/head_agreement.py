"""How reproducibly the run's own clusterer finds K groups: -k auto's second stage.

For a candidate K, `cfg["heads"]` class heads are trained on the descriptors exactly as a discover run trains them
(each from the k-means of its own seed, SCAN's loss, the plan's number of updates, `lr_heads`, `head_batch`), and
their partitions are compared pairwise with the adjusted Rand index. The same is done on a cluster-free reference,
so `metrics.k_choice.refine` can score the excess (Clest, Dudoit & Fridlyand 2002, with the heads as the clusterer).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import torch
from torch import nn

from i2icurate.engines.heads import HeadPhase
from i2icurate.plan import head_steps


class LinearHeads(nn.Module):
    """`n_heads` linear class heads over `dim`-sized descriptors, without a trunk (what HeadPhase trains)."""

    def __init__(self, dim: int, k: int, n_heads: int) -> None:
        super().__init__()
        self.k = k
        self.heads = nn.ModuleList(nn.Linear(dim, k) for _ in range(n_heads))


def head_partitions(desc: np.ndarray, k: int, cfg: dict[str, Any], device: torch.device,
                    seed: int = 0) -> list[np.ndarray]:
    """The partitions of (N, D) unit descriptors by `cfg["heads"]` (at least 2) heads trained with K = k."""
    x = torch.from_numpy(np.ascontiguousarray(desc, dtype=np.float32))
    heads = LinearHeads(x.shape[1], k, max(2, int(cfg["heads"]))).to(device)
    phase = HeadPhase.on_descriptors(heads, x[None], {**cfg, "seed": seed}, device)
    phase.start_heads()
    opt = torch.optim.Adam(heads.parameters(), lr=cfg["lr_heads"])
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    for _ in range(head_steps(len(x), cfg["head_batch"])):
        idx = torch.randint(len(x), (cfg["head_batch"],), generator=gen, device=device)
        loss, _ = phase.losses(idx, gen, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return [head(phase.desc[0]).argmax(1).cpu().numpy() for head in heads.heads]


def head_agreement(desc: np.ndarray, k: int, cfg: dict[str, Any], device: torch.device, seed: int = 0) -> float:
    """Mean adjusted Rand index over every pair of the partitions of `head_partitions`."""
    from sklearn.metrics import adjusted_rand_score

    parts = head_partitions(desc, k, cfg, device, seed)
    return float(np.mean([adjusted_rand_score(a, b) for a, b in combinations(parts, 2)]))
