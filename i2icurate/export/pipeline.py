"""Everything a finished discover run writes besides its checkpoint (see docs/run-folder.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from i2icurate.data.cache import load_cache
from i2icurate.data.labels import load_eval_labels
from i2icurate.engines.checkpoint import LAST, load_checkpoint
from i2icurate.engines.tunit import build_networks, resolve_device
from i2icurate.export.inference import embed, translate_to_styles
from i2icurate.export.neighbors import build_index, knn_outlier_scores, save_index
from i2icurate.export.summary import cluster_summary, print_summary
from i2icurate.export.visuals import cluster_sheets, scatter_png, translation_grid, umap_2d
from i2icurate.metrics.clustering import clustering_scores
from i2icurate.runs import read_csv, read_json, save_npy, write_csv, write_json

IMAGES_CSV = "images.csv"
ASSIGNMENTS_CSV = "assignments.csv"
GRID_ROWS = 8


def load_run_images(run: Path, cfg: dict[str, Any]) -> tuple[list[dict[str, str]], np.ndarray]:
    """The run's image table (images.csv) and its uint8 decode cache."""
    rows = read_csv(run / IMAGES_CSV)
    return rows, load_cache(run / "cache", cfg["img_size"])


def load_trained(run: Path, cfg: dict[str, Any], device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The EMA guiding network and generator from the run's last checkpoint."""
    state = load_checkpoint(run / LAST)
    nets = build_networks(cfg)
    guiding, generator = nets["E"], nets["G"]
    guiding.load_state_dict(state["models"]["E_ema"])
    generator.load_state_dict(state["models"]["G_ema"])
    return guiding.to(device).eval(), generator.to(device).eval()


def cluster_prototypes(styles: np.ndarray, clusters: np.ndarray, k: int) -> np.ndarray:
    """Mean style code of each cluster (zeros for an empty cluster)."""
    protos = np.zeros((k, styles.shape[1]), dtype=np.float32)
    for c in range(k):
        members = clusters == c
        if members.any():
            protos[c] = styles[members].mean(axis=0)
    return protos


def export_run(run: Path, console: Console, eval_labels: str | None = None) -> dict[str, Any]:
    """Embed every image, assign clusters, and write tables, index, UMAP and pictures into the run folder."""
    cfg = read_json(run / "config.json")
    device = resolve_device(cfg["device"])
    rows, images = load_run_images(run, cfg)
    guiding, generator = load_trained(run, cfg, device)
    k = cfg["k"]

    with console.status("embedding images"):
        probs, styles = embed(guiding, images, device)
    order = np.sort(probs, axis=1)
    clusters = probs.argmax(axis=1)
    confidence = order[:, -1]
    margin = order[:, -1] - order[:, -2]
    prototypes = cluster_prototypes(styles, clusters, k)

    with console.status("nearest neighbours and outlier scores (faiss)"):
        outliers = knn_outlier_scores(styles)
        save_index(build_index(styles), run / "embeddings.faiss")
    with console.status("UMAP projection"):
        points = umap_2d(styles, seed=cfg["seed"])

    paths = [r["path"] for r in rows]
    write_csv(
        run / ASSIGNMENTS_CSV,
        ["path", "cluster", "confidence", "margin", "outlier_score", "duplicate_of"],
        (
            [p, int(c), f"{conf:.6f}", f"{m:.6f}", f"{o:.6f}", r["duplicate_of"]]
            for p, c, conf, m, o, r in zip(paths, clusters, confidence, margin, outliers, rows, strict=True)
        ),
    )
    save_npy(run / "embeddings.npy", styles)
    save_npy(run / "probabilities.npy", probs)
    save_npy(run / "prototypes.npy", prototypes)
    save_npy(run / "umap.npy", points)

    with console.status("pictures"):
        scatter_png(points, clusters, run / "umap.png", k, title=f"{run.name}: UMAP of style codes")
        cluster_sheets(lambda idx: images[np.asarray(idx)], clusters, confidence, k, run / "clusters")
        filled = [c for c in range(k) if (clusters == c).any()]
        sources = [int(np.flatnonzero(clusters == c)[np.argmax(confidence[clusters == c])]) for c in filled]
        sources = sources[:GRID_ROWS]
        outputs = translate_to_styles(generator, images[np.asarray(sources)], prototypes[filled], device)
        translation_grid(images[np.asarray(sources)], outputs, run / "translation_grid.png",
                         ["source"] + [f"cluster {c}" for c in filled])

    spec = cfg.get("eval_labels", "") if eval_labels is None else eval_labels
    truth = load_eval_labels(spec, paths)
    scores = clustering_scores(truth, clusters) if truth is not None else None
    table = cluster_summary(clusters, confidence, k)
    summary = {"images": len(paths), "k": k, "clusters": table, "scores": scores, "eval_labels": spec}
    write_json(run / "summary.json", summary)
    print_summary(console, table, scores, title=str(run))
    return summary
