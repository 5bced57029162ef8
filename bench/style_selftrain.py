"""Style domains by self-training: how far a linear classifier, retrained on its own cross-validated predictions,
carries a rough style partition, and whether anything unsupervised can tell which partition to keep.

For each set (the style-domain sets of bench/style_sets.py and samples of the content sets), images decoded as
`discover` decodes them on a CPU (32 px, trunk reading 64 px) are described by
  - the frozen trunk's per-stage channel mean/std and early Gram statistics (bench/style_descriptors.py), each
    block standardised, PCA-whitened to 32 dimensions;
  - eight families of low-level rendering statistics of the decoded image, the package's own
    (`i2icurate/models/backbones/rendering.py`): saturation, channel spread, tone, palette, gradient magnitude and
    orientation, ink stroke width, MSCN contrast.
`F` is all of them side by side. Then, for each seed:
  1. starts: k-means (K = the number of classes) on each low-level family, on all of them, and on the first 2, 4,
     8 or 16 whitened axes of the per-stage and Gram blocks;
  2. refined: each start is relabelled by a logistic regression on `F` with 5-fold cross-validated predictions
     (shuffled, stratified folds), until the labels stop changing (10 rounds at most);
  3. chosen: the refined partition with the highest mean predicted probability ("confident"), or the one most
     other refined partitions agree with (ARI >= 0.8, weighted by confidence: "supported").
It prints, per set, the supervised ceiling (the same logistic regression with the true classes, 5-fold), k-means on
the pixels, the best start, the best refined partition and the two chosen ones (ACC, mean over the seeds).

    python bench/style_selftrain.py --threads 1                      # every style set and two content sets
    python bench/style_selftrain.py --dataset openmoji-colour-line --seeds 1
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import click
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict, cross_val_score
from sklearn.preprocessing import StandardScaler
from style_descriptors import _blocks, _load_folder, trunk_statistics
from style_sets import STYLE_SETS, write_style_set

from i2icurate.data.augment import signed_from_u8
from i2icurate.data.demo import DATASETS, write_demo_images
from i2icurate.metrics.clustering import clustering_scores
from i2icurate.models.backbones.rendering import FAMILIES
from i2icurate.models.backbones.rendering import rendering_statistics as package_rendering_statistics

PROBE_C = 0.05  # the logistic regression's inverse L2 strength on standardised F (~100 columns)


def rendering_statistics(images: np.ndarray) -> dict[str, np.ndarray]:
    """The package's rendering statistics (what `discover --domains style` reads) of (N, S, S, 3) uint8 images,
    split by family: (N, width) per family name."""
    x = signed_from_u8(images)
    columns = torch.split(package_rendering_statistics(x).double(), [w for _, w in FAMILIES], dim=1)
    return {name: part.numpy() for (name, _), part in zip(FAMILIES, columns, strict=True)}


def feature_blocks(images: np.ndarray, trunk_size: int = 64) -> dict[str, np.ndarray]:
    """Each block of F, standardised: the low-level families and the whitened trunk blocks."""
    blocks = {f"low:{name}": values for name, values in rendering_statistics(images).items()}
    stats = trunk_statistics(images, trunk_size)
    blocks["per-stage"] = PCA(32, whiten=True, random_state=0).fit_transform(
        _blocks(stats["per-stage"], stats["stage_channels"]))
    blocks["gram"] = PCA(32, whiten=True, random_state=0).fit_transform(_blocks(stats["gram"], stats["gram_sizes"]))
    return {name: StandardScaler().fit_transform(b) for name, b in blocks.items()}


def joint_features(blocks: dict[str, np.ndarray]) -> np.ndarray:
    """F: every block side by side, each low-level family weighted by 1/sqrt(its width) (families count alike)."""
    parts = [b / np.sqrt(b.shape[1]) if name.startswith("low:") else b for name, b in blocks.items()]
    return StandardScaler().fit_transform(np.concatenate(parts, 1))


def starts(blocks: dict[str, np.ndarray], k: int, seed: int) -> dict[str, np.ndarray]:
    """k-means partitions of each low-level family, of all of them, and of leading whitened trunk axes."""
    low = [name for name in blocks if name.startswith("low:")]
    inputs = {name: blocks[name] for name in low}
    inputs["low:all"] = np.concatenate([blocks[n] / np.sqrt(blocks[n].shape[1]) for n in low], 1)
    for name in ("per-stage", "gram"):
        for dim in (2, 4, 8, 16):
            inputs[f"{name}/{dim}"] = blocks[name][:, :dim]
    return {name: KMeans(k, n_init=3, random_state=seed).fit_predict(x) for name, x in inputs.items()}


def self_train(features: np.ndarray, labels: np.ndarray, seed: int, rounds: int = 10,
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """Relabel by cross-validated logistic regression until stable: (labels, probabilities), or None when a
    cluster empties or a fold lacks a class."""
    k = int(labels.max()) + 1
    probabilities = None
    for _ in range(rounds):
        if np.bincount(labels, minlength=k).min() < 10:
            return None
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        model = LogisticRegression(C=PROBE_C, max_iter=2000, class_weight="balanced")
        try:
            probabilities = cross_val_predict(model, features, labels, cv=folds, method="predict_proba")
        except ValueError:
            return None
        relabelled = probabilities.argmax(1)
        if (relabelled == labels).all():
            break
        labels = relabelled
    return labels, probabilities


def _acc(truth: list[str], labels: np.ndarray) -> float:
    return clustering_scores(truth, labels)["acc"]


def evaluate(images: np.ndarray, truth: list[str], seeds: int) -> dict[str, float]:
    """ACC of the starts, refined and chosen partitions (means over seeds) and the supervised ceiling."""
    k = len(set(truth))
    blocks = feature_blocks(images)
    features = joint_features(blocks)
    classes = np.unique(truth, return_inverse=True)[1]
    ceiling = cross_val_score(LogisticRegression(C=PROBE_C, max_iter=2000), features, classes,
                              cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean()
    pixels = images.reshape(len(images), -1).astype(np.float64) / 255.0
    rows: dict[str, list[float]] = {"pixels": [], "best start": [], "best refined": [], "confident": [],
                                    "supported": []}
    for seed in range(seeds):
        rows["pixels"].append(_acc(truth, KMeans(k, n_init=3, random_state=seed).fit_predict(pixels)))
        begun = starts(blocks, k, seed)
        rows["best start"].append(max(_acc(truth, p) for p in begun.values()))
        refined = [r for r in (self_train(features, p, seed) for p in begun.values()) if r is not None]
        if not refined:  # every start lost a cluster: nothing to choose from
            for name in ("best refined", "confident", "supported"):
                rows[name].append(float("nan"))
            continue
        confidence = np.array([prob.max(1).mean() for _, prob in refined])
        agree = np.array([[adjusted_rand_score(a, b) >= 0.8 for b, _ in refined] for a, _ in refined], dtype=float)
        accs = [_acc(truth, labels) for labels, _ in refined]
        rows["best refined"].append(max(accs))
        rows["confident"].append(accs[int(np.argmax(confidence))])
        rows["supported"].append(accs[int(np.argmax(agree @ confidence))])
    return {"ceiling": float(ceiling), **{name: float(np.mean(v)) for name, v in rows.items()}}


@click.command()
@click.option("--dataset", "datasets", multiple=True, type=click.Choice((*STYLE_SETS, *DATASETS)),
              default=(*STYLE_SETS, *DATASETS))
@click.option("--per-class", type=int, default=200, show_default=True, help="Images per class of the content sets.")
@click.option("--img-size", type=int, default=32, show_default=True, help="Decoded size (discover's CPU plan).")
@click.option("--seeds", type=int, default=3, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Write (or reuse) the image folders here (default: a temporary folder).")
def main(datasets, per_class, img_size, seeds, threads, data) -> None:
    """Print the self-training table."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    console = Console()
    columns = ("set", "supervised ceiling", "k-means pixels", "best start", "best refined", "confident", "supported")
    table = Table(title=f"style domains by self-training: ACC, mean of {seeds} seeds")
    for col in columns:
        table.add_column(col, justify="left" if col == "set" else "right")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(data or tmp)
        for name in datasets:
            folder = (write_style_set(name, root / name) if name in STYLE_SETS
                      else write_demo_images(root / f"{name}-{per_class}", name, per_class))
            images, truth = _load_folder(folder, img_size)
            scores = evaluate(images, truth, seeds)
            table.add_row(f"{name} (K={len(set(truth))}, {len(truth)})", *(f"{scores[c]:.3f}" for c in (
                "ceiling", "pixels", "best start", "best refined", "confident", "supported")))
            console.print(f"{name}: " + ", ".join(f"{c} {v:.3f}" for c, v in scores.items()), highlight=False)
    console.print(table)


if __name__ == "__main__":
    main()
