"""Would spreading a reviewer's moves to look-alike images help? Seeded k-means inside each source cluster, measured.

A reviewer who moves a handful of images from cluster A to cluster B may mean "A holds a group of B's images". One
way to act on it (Basu, Banerjee & Mooney 2002, seeded k-means): inside A, start one centroid at the mean
descriptor of the images moved to each target, one at the rest of A, run spherical k-means with the moved images
held in their groups, and send every unlabelled image that joins a target's group to that target. This script
measures, on a finished discover run with folder labels (a pretrained trunk), what that rule would move for a
simulated reviewer of bench/review_semi.py: how many images, how many of them would land in their true class's
cluster, and how many were already there. Nothing is trained; the run is only read.

    python bench/split_propagation.py --run runs/discover/animal-mnist1 --reviewer split
    python bench/split_propagation.py --run runs/discover/mnist-5k1 --reviewer lowest
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
import torch
import torch.nn.functional as F
from review_semi import REVIEWERS, class_to_cluster

from i2icurate.data.domains import EXCLUDE, NEW_CLUSTER, parse_cluster
from i2icurate.engines.checkpoint import LAST, load_checkpoint
from i2icurate.engines.tunit import build_guiding
from i2icurate.runs import CONFIG_FILE, read_csv, read_json


@torch.no_grad()
def run_descriptors(run: Path) -> torch.Tensor:
    """The descriptors (N, D) the run's class heads read, of the first view of its cached trunk features."""
    cfg = read_json(run / CONFIG_FILE)
    guiding = build_guiding(cfg)
    guiding.load_state_dict(load_checkpoint(run / LAST)["models"]["E"])
    content = torch.from_numpy(np.load(run / "features_content.npy", mmap_mode="r")[0].astype(np.float32))
    style = torch.from_numpy(np.load(run / "features_style.npy", mmap_mode="r")[0].astype(np.float32))
    return guiding.describe(content, style)


def seeded_split(desc: torch.Tensor, clusters: np.ndarray, moved: dict[int, int], iters: int = 50) -> np.ndarray:
    """Per image: the target cluster seeded k-means inside its source cluster sends it to, else -1. `moved`:
    labelled image -> its target cluster (labels that keep an image in its cluster are part of the source group)."""
    out = np.full(len(clusters), -1)
    for source in sorted({int(clusters[i]) for i in moved}):
        members = np.flatnonzero(clusters == source)
        targets = sorted({t for i, t in moved.items() if clusters[i] == source and t != source})
        if not targets:
            continue
        groups = [source, *targets]
        held = np.array([groups.index(moved[i]) if i in moved else -1 for i in members])
        x = desc[members]
        assign = np.where(held >= 0, held, 0)
        for _ in range(iters):
            centroids = F.normalize(torch.stack([x[torch.from_numpy(assign == g)].mean(0) for g in range(len(groups))]),
                                    dim=1)
            new = (x @ centroids.T).argmax(1).numpy()
            new[held >= 0] = held[held >= 0]
            if np.array_equal(new, assign):
                break
            assign = new
        for image, group in zip(members, assign, strict=True):
            if group and image not in moved:
                out[image] = groups[group]
    return out


@click.command()
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="A finished discover run on a pretrained trunk, trained with --eval-labels folders.")
@click.option("--reviewer", type=click.Choice(tuple(REVIEWERS)), default="split", show_default=True)
@click.option("--share", type=float, default=0.05, show_default=True)
@click.option("--handful", type=int, default=10, show_default=True)
def main(run_dir: str, reviewer: str, share: float, handful: int) -> None:
    """Print what seeded k-means would move for one simulated reviewer."""
    run = Path(run_dir)
    rows = read_csv(run / "assignments.csv")
    truth = [Path(r["path"]).parts[0] for r in rows]
    clusters = np.array([int(r["cluster"]) for r in rows])
    confidence = np.array([float(r["confidence"]) for r in rows])
    mapping = class_to_cluster(truth, clusters)
    labels = REVIEWERS[reviewer](rows, truth, clusters, confidence, mapping, share, handful)
    index = {r["path"]: i for i, r in enumerate(rows)}
    new_cluster = int(clusters.max()) + 1
    moved = {index[p]: new_cluster if label == NEW_CLUSTER else parse_cluster(label) for p, label in labels
             if label != EXCLUDE}
    out = seeded_split(run_descriptors(run), clusters, moved)
    chosen = np.flatnonzero(out >= 0)
    tagged_class = truth[next(iter(moved))] if moved else None
    right = sum((truth[i] == tagged_class) if out[i] == new_cluster else mapping.get(truth[i]) == out[i]
                for i in chosen)
    were_right = sum(mapping.get(truth[i]) == clusters[i] for i in chosen)
    print(f"{run.name} {reviewer}: {len(moved)} labels; seeded k-means would move {len(chosen)} more images, "
          f"{right} of them into their class's cluster; {were_right} of them were in it already")


if __name__ == "__main__":
    main()
