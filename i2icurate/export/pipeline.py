"""Everything a finished discover run writes besides its checkpoint (see docs/run-folder.md)."""

from __future__ import annotations

import csv
import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from i2icurate.commands.auto_k import k_auto_line
from i2icurate.config import CONTENT, run_domains
from i2icurate.curation.changes import write_changes
from i2icurate.data.cache import load_cache
from i2icurate.data.domains import LABELS_CSV, read_labels
from i2icurate.data.labels import load_eval_labels
from i2icurate.engines.checkpoint import LAST, load_checkpoint
from i2icurate.engines.tunit import build_networks, resolve_device, speed_settings
from i2icurate.errors import UserError
from i2icurate.export.inference import atomic_memmap, embed_to_npy, translate_to_styles
from i2icurate.export.neighbors import build_index, knn_outlier_scores, save_index, use_gpu_faiss
from i2icurate.export.spans import CHUNK_ROWS, row_spans
from i2icurate.export.summary import cluster_summary, print_summary
from i2icurate.export.visuals import cluster_sheets, scatter_png, translation_grid, umap_2d
from i2icurate.markup import escape
from i2icurate.metrics.clustering import clustering_scores
from i2icurate.models.backbones import SCRATCH, is_pretrained
from i2icurate.runs import atomic_path, read_csv, read_json, save_npy, write_json

IMAGES_CSV = "images.csv"
ASSIGNMENTS_CSV = "assignments.csv"
ASSIGNMENT_COLUMNS = ["path", "cluster", "confidence", "margin", "outlier_score", "duplicate_of"]
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


def assign_clusters(probs: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cluster, confidence and margin of every row of (N, K) probabilities, read chunk by chunk.

    cluster = argmax, confidence = top-1 probability, margin = top-1 minus top-2 (float32, as written to the CSV).
    """
    n = len(probs)
    clusters = np.empty(n, dtype=np.int64)
    confidence = np.empty(n, dtype=np.float32)
    margin = np.empty(n, dtype=np.float32)
    for start, stop in row_spans(n, chunk_rows):
        p = np.asarray(probs[start:stop], dtype=np.float32)
        order = np.sort(p, axis=1)
        clusters[start:stop] = p.argmax(axis=1)
        confidence[start:stop] = order[:, -1]
        margin[start:stop] = order[:, -1] - order[:, -2]
    return clusters, confidence, margin


def cluster_prototypes(styles: np.ndarray, clusters: np.ndarray, k: int, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Mean style code of each cluster (zeros for an empty cluster), summed chunk by chunk in float64."""
    sums = np.zeros((k, styles.shape[1]), dtype=np.float64)
    counts = np.bincount(np.asarray(clusters), minlength=k)[:k]
    for start, stop in row_spans(len(styles), chunk_rows):
        np.add.at(sums, np.asarray(clusters[start:stop]), np.asarray(styles[start:stop], dtype=np.float64))
    protos = np.zeros((k, styles.shape[1]), dtype=np.float32)
    filled = counts > 0
    protos[filled] = sums[filled] / counts[filled, None]
    return protos


def _csv_column(header: list[str], name: str, path: Path) -> int:
    if name not in header:
        raise UserError(f"{path} has no {name!r} column")
    return header.index(name)


def write_assignments(
    run: Path, clusters: np.ndarray, confidence: np.ndarray, margin: np.ndarray, outliers: np.ndarray
) -> None:
    """Write assignments.csv atomically, one row per images.csv row, reading and writing a chunk of rows at a time."""
    source, n = run / IMAGES_CSV, len(clusters)
    with (
        open(source, newline="", encoding="utf-8") as src,
        atomic_path(run / ASSIGNMENTS_CSV) as tmp,
        open(tmp, "w", newline="", encoding="utf-8") as dst,
    ):
        reader, writer = csv.reader(src), csv.writer(dst, lineterminator="\n")
        header = next(reader, [])
        path_col, dup_col = _csv_column(header, "path", source), _csv_column(header, "duplicate_of", source)
        writer.writerow(ASSIGNMENT_COLUMNS)
        for start, stop in row_spans(n, CHUNK_ROWS):
            rows = list(itertools.islice(reader, stop - start))
            if len(rows) < stop - start:
                raise UserError(f"{source} lists fewer images than the cache holds ({n}); re-run discover")
            # .tolist() gives Python floats of the float32 values: the same text as formatting the numpy scalars
            writer.writerows(
                [r[path_col], c, f"{conf:.6f}", f"{m:.6f}", f"{o:.6f}", r[dup_col]]
                for r, c, conf, m, o in zip(
                    rows, clusters[start:stop].tolist(), confidence[start:stop].tolist(),
                    margin[start:stop].tolist(), outliers[start:stop].tolist(), strict=True,
                )
            )
        if next(reader, None) is not None:
            raise UserError(f"{source} lists more images than the cache holds ({n}); re-run discover")
        dst.flush()
        os.fsync(dst.fileno())


def count_images(run: Path) -> int:
    """Number of data rows in images.csv."""
    with open(run / IMAGES_CSV, newline="", encoding="utf-8") as f:
        return max(0, sum(1 for _ in csv.reader(f)) - 1)


def read_paths(run: Path) -> list[str]:
    """The `path` column of images.csv."""
    source = run / IMAGES_CSV
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        col = _csv_column(next(reader, []), "path", source)
        return [row[col] for row in reader]


def _write_umap(run: Path, styles: np.ndarray, seed: int) -> np.ndarray:
    threads = torch.get_num_threads()
    with atomic_memmap(run / "umap.npy", (len(styles), 2)) as out:
        umap_2d(styles, seed=seed, out=out)
        del out
    torch.set_num_threads(threads)  # numba's OpenMP layer resets the pool torch shares: keep the run's --threads
    return np.load(run / "umap.npy", mmap_mode="r")


def _grid_sources(clusters: np.ndarray, confidence: np.ndarray, filled: list[int]) -> list[int]:
    """The most confident image (first in order on ties) of each of the first GRID_ROWS filled clusters."""
    sources = []
    for c in filled[:GRID_ROWS]:
        members = np.flatnonzero(clusters == c)
        sources.append(int(members[np.argmax(confidence[members])]))
    return sources


def export_run(run: Path, console: Console, eval_labels: str | None = None) -> dict[str, Any]:
    """Embed every image, assign clusters, and write tables, index, UMAP and pictures into the run folder.

    Every per-image array is streamed through memmaps and chunks, so host memory does not grow with the number of
    images beyond a few small per-image vectors and the faiss index (see docs/run-folder.md).
    """
    cfg = read_json(run / "config.json")
    device = resolve_device(cfg["device"])
    images = load_cache(run / "cache", cfg["img_size"])
    guiding, generator = load_trained(run, cfg, device)
    k, n = cfg["k"], len(images)
    listed = count_images(run)
    if listed != n:  # checked before any output is replaced
        raise UserError(f"{run / IMAGES_CSV} lists {listed} images but the cache holds {n}; re-run discover")

    with console.status("embedding images"):
        probs, styles = embed_to_npy(guiding, images, device, run / "probabilities.npy", run / "embeddings.npy",
                                     precision=cfg.get("precision", "auto"),
                                     channels_last=speed_settings(cfg, device).channels_last)
    clusters, confidence, margin = assign_clusters(probs)
    prototypes = cluster_prototypes(styles, clusters, k)
    save_npy(run / "prototypes.npy", prototypes)

    with console.status("nearest neighbours and outlier scores"):
        index = build_index(styles, gpu=use_gpu_faiss(), seed=cfg["seed"])
        outliers = knn_outlier_scores(styles, index=index)
        save_index(index, run / "embeddings.faiss")
        del index
    with console.status("UMAP projection"):
        points = _write_umap(run, styles, cfg["seed"])
    write_assignments(run, clusters, confidence, margin, outliers)

    with console.status("pictures"):
        scatter_png(points, clusters, run / "umap.png", k, title=f"{run.name}: UMAP of style codes")
        cluster_sheets(lambda idx: images[np.asarray(idx)], clusters, confidence, k, run / "clusters")
        filled = [int(c) for c in np.flatnonzero(np.bincount(clusters, minlength=k)[:k])]
        sources = _grid_sources(clusters, confidence, filled)
        outputs = translate_to_styles(generator, images[np.asarray(sources)], prototypes[filled], device)
        translation_grid(images[np.asarray(sources)], outputs, run / "translation_grid.png",
                         ["source"] + [f"cluster {c}" for c in filled])

    spec = cfg.get("eval_labels", "") if eval_labels is None else eval_labels
    truth = load_eval_labels(spec, read_paths(run)) if spec else None
    scores = clustering_scores(truth, clusters) if truth is not None else None
    table = cluster_summary(clusters, confidence, k)
    used = sum(1 for row in table if row["size"] > 0)
    backbone = cfg.get("backbone", SCRATCH)
    summary = {"images": n, "k": k, "clusters_used": used, "backbone": backbone,
               "domains": run_domains(cfg) if is_pretrained(backbone) else None,
               "clusters": table, "scores": scores, "eval_labels": spec}
    if cfg.get("k_auto"):  # -k auto: the chosen K, the runner-up and the rule (figures in k_sweep.csv, k_curve.png)
        summary["k_auto"] = cfg["k_auto"]
    write_json(run / "summary.json", summary)
    print_summary(console, table, scores, title=escape(run))
    if summary["domains"] is not None:
        console.print(f"clusters by {summary['domains']} (--domains {summary['domains']}: "
                      + ("what the images show" if summary["domains"] == CONTENT else "how the images are rendered")
                      + ")", highlight=False)
    if cfg.get("k_auto"):
        console.print(k_auto_line(cfg["k_auto"]), highlight=False)
    if used < k:
        console.print(f"[yellow]warning: only {used} of {k} clusters hold images[/]: the folder may hold fewer "
                      f"domains than K (try -k {used}), or the class head collapsed (try the default --backbone)")
    parent = (cfg.get("lineage") or {}).get("from_run")
    if parent and (run / LABELS_CSV).is_file() and (Path(parent) / "assignments.csv").is_file():
        write_changes(run, Path(parent), read_labels(run / LABELS_CSV), k, console)
    return summary
