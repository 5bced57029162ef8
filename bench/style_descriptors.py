"""Which image descriptor lets unsupervised clustering find *style* domains? Measured on the frozen trunk's features.

For each set (the style-domain sets of bench/style_sets.py and samples of the content sets), the images are decoded
as `discover` decodes them on a CPU (32 px, trunk reading 64 px) and described in several ways:
  - `pixels`: the decoded pixels;
  - `pooled`: the trunk's pooled last map (content);
  - `default`: discover's descriptor today (pooled + every stage's channel mean/std, each part standardised and
    L2-normalised, PCA to 64);
  - `per-stage`: each stage's channel mean/std as its own standardised, L2-normalised block (every stage counts
    equally, instead of the wide late stages dominating);
  - `gram`: the channel covariance (Gatys' Gram matrix, upper triangle) of the stem and the first three stages;
  - `pooled+per-stage+gram`: all three blocks.
Per descriptor it prints k-means ACC (K = the number of classes, mean of 3 seeds), the share of each image's 10
nearest neighbours in its own class (what SCAN's consistency loss can use) and the share of 20-NN graph edges that
the true partition cuts next to the share k-means' partition cuts (SCAN prefers the partition that cuts fewer: when
the true one cuts more, neighbour consistency alone cannot find it), and the ACC of a projection-pursuit
clustering: the most bimodal (lowest-kurtosis) independent components of the descriptor's first 8 principal axes.

    python bench/style_descriptors.py                        # every style set and 200 per class of the content sets
    python bench/style_descriptors.py --dataset typefaces-2
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from scipy.stats import kurtosis
from sklearn.cluster import KMeans
from sklearn.decomposition import FastICA
from style_sets import STYLE_SETS, write_style_set

from i2icurate.data.augment import signed_from_u8
from i2icurate.data.demo import DATASETS, write_demo_images
from i2icurate.data.imageio import decode_to_array
from i2icurate.engines.features import neighbours
from i2icurate.metrics.clustering import clustering_scores
from i2icurate.models.backbones import load_backbone
from i2icurate.models.backbones.base import channel_statistics
from i2icurate.models.backbones.style_trunk import GRAM_STAGES, gram_statistics


def _std_l2(x: np.ndarray) -> np.ndarray:
    z = (x - x.mean(0)) / np.maximum(x.std(0, ddof=1), 1e-6)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-8)


def _pca(x: np.ndarray, dim: int, unit: bool = True) -> np.ndarray:
    centred = x - x.mean(0)
    _, vectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    out = centred @ vectors[:, ::-1][:, :dim]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8) if unit else out


@torch.no_grad()
def trunk_statistics(images: np.ndarray, trunk_size: int = 64, batch: int = 128) -> dict[str, np.ndarray]:
    """Pooled features, per-stage channel mean/std and early-stage Gram statistics of (N, S, S, 3) uint8 images,
    computed by the package's own trunk code (what `discover --domains style` caches)."""
    trunk = load_backbone("efficientnet-lite0", trunk_size)
    out: dict[str, list[np.ndarray]] = {"pooled": [], "per-stage": [], "gram": []}
    for start in range(0, len(images), batch):
        x = signed_from_u8(images[start : start + batch])
        maps, final = trunk.maps(x)
        out["pooled"].append(final.mean((2, 3)).numpy())
        out["per-stage"].append(channel_statistics(maps).numpy())
        out["gram"].append(gram_statistics(maps[:GRAM_STAGES]).numpy())
    stats = {k: np.concatenate(v).astype(np.float64) for k, v in out.items()}
    stats["stage_channels"] = np.array([2 * c for c in trunk.stage_channels])
    stats["gram_sizes"] = np.array([c * (c + 1) // 2 for c in trunk.stage_channels[:GRAM_STAGES]])
    return stats


def _blocks(x: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Each consecutive block of `sizes` columns standardised and L2-normalised, the blocks weighted equally."""
    edges = np.concatenate([[0], np.cumsum(sizes)])
    parts = [_std_l2(x[:, a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return np.concatenate(parts, 1) / np.sqrt(len(parts))


def descriptors(stats: dict[str, np.ndarray], pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The descriptors compared (see the module docstring)."""
    pooled = _std_l2(stats["pooled"])
    per_stage = _blocks(stats["per-stage"], stats["stage_channels"])
    gram = _blocks(stats["gram"], stats["gram_sizes"])
    return {
        "pixels": pixels.reshape(len(pixels), -1).astype(np.float64) / 255.0,
        "pooled": pooled,
        "default": _pca(np.concatenate([pooled, _std_l2(stats["per-stage"])], 1), 64),
        "per-stage": _pca(per_stage, 64),
        "gram": _pca(gram, 64),
        "pooled+per-stage+gram": _pca(np.concatenate([pooled, per_stage, gram], 1), 64),
    }


def _kmeans_acc(x: np.ndarray, truth: list[str], k: int) -> tuple[float, np.ndarray]:
    runs = [KMeans(k, n_init=1, random_state=s).fit_predict(x) for s in range(3)]
    return float(np.mean([clustering_scores(truth, r)["acc"] for r in runs])), runs[0]


def neighbour_figures(x: np.ndarray, truth: np.ndarray, kmeans: np.ndarray) -> tuple[float, float, float]:
    """(10-NN class purity, share of 20-NN edges cut by the true partition, share cut by k-means')."""
    desc = torch.from_numpy(x).float()
    near10, near20 = neighbours(desc, 10).numpy(), neighbours(desc, 20).numpy()
    purity = float((truth[near10] == truth[:, None]).mean())
    return purity, float((truth[near20] != truth[:, None]).mean()), float((kmeans[near20] != kmeans[:, None]).mean())


def pursuit_acc(x: np.ndarray, truth: list[str], k: int, dim: int = 8) -> float:
    """ACC of k-means on the K-1 most bimodal (lowest-kurtosis) independent components of the first `dim` axes."""
    components = FastICA(dim, random_state=0, max_iter=2000, fun="cube", whiten="unit-variance").fit_transform(
        _pca(x, dim, unit=False))
    chosen = np.argsort(kurtosis(components, axis=0))[: max(1, k - 1)]
    labels = KMeans(k, n_init=3, random_state=0).fit_predict(components[:, chosen])
    return clustering_scores(truth, labels)["acc"]


def _load_folder(folder: Path, size: int) -> tuple[np.ndarray, list[str]]:
    paths = sorted(folder.glob("*/*.png"))
    return np.stack([decode_to_array(p, size, 10**8) for p in paths]), [p.parent.name for p in paths]


@click.command()
@click.option("--dataset", "datasets", multiple=True, type=click.Choice((*STYLE_SETS, *DATASETS)),
              default=(*STYLE_SETS, *DATASETS))
@click.option("--per-class", type=int, default=200, show_default=True, help="Images per class of the content sets.")
@click.option("--img-size", type=int, default=32, show_default=True, help="Decoded size (discover's CPU plan).")
@click.option("--trunk-size", type=int, default=64, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
def main(datasets, per_class, img_size, trunk_size, threads) -> None:
    """Print the descriptor comparison table."""
    torch.set_num_threads(threads)
    console = Console()
    table = Table(title="style descriptors: k-means ACC | 10-NN purity | 20-NN edges cut: truth / k-means | pursuit")
    for col in ("set", "descriptor", "k-means ACC", "10-NN purity", "cut truth", "cut k-means", "pursuit ACC"):
        table.add_column(col, justify="left" if col in ("set", "descriptor") else "right")
    with tempfile.TemporaryDirectory() as tmp:
        for name in datasets:
            folder = (write_style_set(name, Path(tmp) / name) if name in STYLE_SETS
                      else write_demo_images(Path(tmp) / name, name, per_class))
            images, truth = _load_folder(folder, img_size)
            k = len(set(truth))
            labels = np.unique(truth, return_inverse=True)[1]
            for desc_name, x in descriptors(trunk_statistics(images, trunk_size), images).items():
                acc, first = _kmeans_acc(x, truth, k)
                purity, cut_truth, cut_km = neighbour_figures(x, labels, first)
                pursuit = pursuit_acc(x, truth, k) if desc_name != "pixels" else float("nan")
                table.add_row(f"{name} (K={k}, {len(truth)})", desc_name, f"{acc:.3f}", f"{purity:.3f}",
                              f"{cut_truth:.3f}", f"{cut_km:.3f}", f"{pursuit:.3f}")
                console.print(f"{name} {desc_name}: ACC {acc:.3f} purity {purity:.3f} cut {cut_truth:.3f}/"
                              f"{cut_km:.3f} pursuit {pursuit:.3f}", highlight=False)
    console.print(table)


if __name__ == "__main__":
    main()
