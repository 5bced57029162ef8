"""How far the content-independence term of `discover --domains style` could carry a style set, given perfect content
groups, and how far its content features are from giving them.

The style sets of bench/style_sets.py draw the same content in every style under the same file name (a glyph's code
point in each typeface, an emoji's code in colour and line-art, a photo crop in each rendering). For each discover
run given (`--domains style`, its feature cache in the run folder), the head phase is replayed on the run's cached
descriptors with the package's own `HeadPhase` (SCAN + entropy + `w` × the mutual information with content groups;
the style head, its MoCo term and the neighbourhood term are left out), K = the run's, once per grouping and weight:

- `run`: the groups the run itself uses (k-means of its cached edge-map features, `engines.heads.content_groups`);
- `same-name`: one group per file name, i.e. the images that show the same thing in every style (an oracle);
- `same-name-16`: the file names' mean edge-map features in 16 k-means groups (an oracle of coarse content groups).

It prints the ACC of the head the run would choose (lowest SCAN + term over the folder) and of the best of the
heads, and how often an image's nearest neighbour in another true style, by the run's edge-map features, shows the
same thing (what an unsupervised content grouping would have to get right for `same-name` to be within reach).

    python bench/independence_oracle.py --run RUNS/discover/typefaces4 --weights 1,3,10 --threads 1
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import click
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from i2icurate.data.cache import load_cache
from i2icurate.engines.heads import CONTENT_GROUPS, HeadPhase, content_groups
from i2icurate.engines.tunit import build_guiding
from i2icurate.metrics.clustering import cluster_accuracy
from i2icurate.plan import warmup_iterations

GROUPINGS = ("run", "same-name", "same-name-16")


def run_images(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """(style index, content index) of each image of a run, from its images.csv: the folder and the file name."""
    with open(run / "images.csv", newline="") as f:
        paths = [Path(row["path"]) for row in csv.DictReader(f)]
    styles = np.unique([p.parent.name for p in paths], return_inverse=True)[1]
    contents = np.unique([p.stem for p in paths], return_inverse=True)[1]
    return styles, contents


def groups_for(grouping: str, content: np.ndarray, names: np.ndarray, seed: int) -> np.ndarray:
    """(N,) content group of each image under `grouping` (see the module docstring)."""
    if grouping == "run":
        return content_groups(content, CONTENT_GROUPS, seed)
    if grouping == "same-name":
        return names
    means = np.stack([content[names == j].mean(0) for j in range(names.max() + 1)])
    return content_groups(means, CONTENT_GROUPS, seed)[names]


def cross_style_match(content: np.ndarray, styles: np.ndarray, names: np.ndarray) -> float:
    """Share of (image, other style) pairs whose nearest image of that style by `content` (standardised, cosine)
    has the same file name."""
    z = (content - content.mean(0)) / (content.std(0) + 1e-6)
    z /= np.linalg.norm(z, axis=1, keepdims=True).clip(1e-12)
    hits = []
    for a in np.unique(styles):
        rows = np.flatnonzero(styles == a)
        for b in np.unique(styles):
            if a == b:
                continue
            others = np.flatnonzero(styles == b)
            nearest = others[(z[rows] @ z[others].T).argmax(1)]
            hits.append(float((names[nearest] == names[rows]).mean()))
    return float(np.mean(hits))


def replay(run: Path, grouping: str, weight: float, seed: int) -> tuple[float, float]:
    """(ACC of the chosen head, best ACC over the heads): the run's head phase replayed with `grouping` at `weight`."""
    cfg = {**json.loads((run / "config.json").read_text()), "seed": seed, "w_independence": weight}
    content = np.load(run / "features_content.npy", mmap_mode="r")
    style = np.load(run / "features_style.npy", mmap_mode="r")
    styles, names = run_images(run)
    torch.manual_seed(seed)
    guiding = build_guiding(cfg)
    phase = HeadPhase(guiding, content, style, {**cfg, "w_independence": 0.0}, torch.device("cpu"),
                      images=load_cache(run / "cache", cfg["img_size"]))
    phase.fit_descriptor()
    phase.prepare()
    phase.start_heads()
    found = groups_for(grouping, np.asarray(content[0], dtype=np.float64), names, seed)
    phase.cfg = cfg
    phase.groups, phase.n_groups = torch.from_numpy(found).long(), int(found.max()) + 1
    opt = torch.optim.Adam(guiding.heads.parameters(), lr=cfg["lr_heads"])
    gen = torch.Generator().manual_seed(seed + 4)
    for _ in range(warmup_iterations(cfg)):  # the run's own head phase
        idx = torch.randint(len(names), (cfg["head_batch"],), generator=gen)
        loss, _ = phase.losses(idx, gen, None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        accs = [cluster_accuracy(styles, head(phase.desc[0]).argmax(1).numpy()) for head in guiding.heads]
    return accs[int(np.argmin(phase.head_scores()))], max(accs)


@click.command()
@click.option("--run", "runs", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="A discover run made with --domains style on a style set (repeatable).")
@click.option("--weights", default="1,3,10", show_default=True,
              help="Weights of the independence term, comma-separated.")
@click.option("--grouping", "groupings", multiple=True, type=click.Choice(GROUPINGS), default=GROUPINGS,
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
def main(runs: tuple[str, ...], weights: str, groupings: tuple[str, ...], seed: int, threads: int | None) -> None:
    """Replay each run's head phase with oracle content groups and print one table."""
    if threads:
        torch.set_num_threads(threads)
    console = Console()
    table = Table("run", "grouping", "w", "chosen head ACC", "best head ACC", "cross-style NN same content")
    for run in map(Path, runs):
        styles, names = run_images(run)
        content = np.asarray(np.load(run / "features_content.npy", mmap_mode="r")[0], dtype=np.float64)
        match = f"{cross_style_match(content, styles, names):.3f}"
        for grouping in groupings:
            for w in (float(v) for v in weights.split(",")):
                chosen, best = replay(run, grouping, w, seed)
                table.add_row(run.name, grouping, f"{w:g}", f"{chosen:.3f}", f"{best:.3f}", match)
                console.print(f"{run.name} {grouping} w {w:g}: chosen {chosen:.3f}, best {best:.3f}")
    console.print(table)


if __name__ == "__main__":
    main()
