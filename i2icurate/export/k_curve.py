"""k_curve.png: every criterion of a -k auto sweep against K, the chosen K and the runner-up marked."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from i2icurate.runs import atomic_path

PANELS = (
    ("head_agreement_excess", "class heads' agreement, excess over the reference (the rule; refined Ks only)"),
    ("stability_excess", "k-means stability excess over the reference (where the heads look)"),
    ("stability", "stability (mean ARI of subsample pairs); dashed: reference"),
    ("silhouette", "silhouette (cosine)"),
    ("eigengap", "eigengap of the kNN graph Laplacian"),
)


def k_curve_png(rows: list[dict[str, float]], chosen: int, runner_up: int | None, path: str | Path,
                title: str = "") -> Path:
    """Write one panel per criterion against K (the chosen K as a solid line, the runner-up dashed), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    ks = np.array([r["k"] for r in rows])
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(7, 2.1 * len(PANELS)), sharex=True, squeeze=False)
    for ax, (key, label) in zip(axes[:, 0], PANELS, strict=True):
        ax.plot(ks, [r.get(key, np.nan) for r in rows], marker="o", markersize=3, color="tab:blue")
        if key == "stability":
            ax.plot(ks, [r["stability_null"] for r in rows], linestyle="--", color="tab:gray")
        ax.axvline(chosen, color="tab:red", linewidth=1.5, label=f"chosen K={chosen}")
        if runner_up is not None:
            ax.axvline(runner_up, color="tab:orange", linestyle="--", linewidth=1, label=f"runner-up K={runner_up}")
        ax.set_title(label, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="best")
    axes[-1, 0].set_xlabel("K")
    if len(ks) <= 30:
        axes[-1, 0].set_xticks(ks)
    if title:
        fig.suptitle(textwrap.fill(title, 100), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
