"""Does a reviewer's correction of a few images improve the clusters? Semi-supervised retraining, measured.

1. `discover` on labelled real data (class-named folders, labels used only for scoring): ACC before.
2. A simulated reviewer corrects the `--share` (5 %) lowest-confidence images with their true class, expressed as the
   cluster that class maps to (Hungarian matching of step 1), written to labels.csv as `sync` would.
3. `discover --labels labels.csv --from RUN` for `--retrain-iters` iterations: ACC after.
4. Control: the same continuation without labels, so the gain from the labels is separated from the gain from
   training longer.

    python bench/review_semi.py --dataset mnist-5k                 # CPU, the default plan
    python bench/review_semi.py --before runs/discover/animal-mnist1   # on a finished run
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.optimize import linear_sum_assignment

from i2icurate.commands.discover import discover
from i2icurate.data.demo import DATASETS, write_demo_images
from i2icurate.data.labels import folder_labels
from i2icurate.runs import read_csv, read_json, write_csv


def class_to_cluster(truth: list[str], clusters: np.ndarray) -> dict[str, int]:
    """The cluster each true class is matched to (Hungarian on the contingency table, as for ACC)."""
    classes = sorted(set(truth))
    k = int(clusters.max()) + 1
    counts = np.zeros((len(classes), max(k, len(classes))), dtype=np.int64)
    for t, c in zip(truth, clusters, strict=True):
        counts[classes.index(t), c] += 1
    rows, cols = linear_sum_assignment(-counts)
    return {classes[r]: int(c) for r, c in zip(rows, cols, strict=True)}


def simulate_reviewer(run: Path, share: float, out: Path) -> int:
    """Label the lowest-confidence `share` of images with their true class's cluster; returns how many."""
    rows = read_csv(run / "assignments.csv")
    truth = folder_labels([r["path"] for r in rows])
    clusters = np.array([int(r["cluster"]) for r in rows])
    confidence = np.array([float(r["confidence"]) for r in rows])
    mapping = class_to_cluster(truth, clusters)
    chosen = np.argsort(confidence)[: max(1, int(round(share * len(rows))))]
    now = dt.datetime.now().isoformat(timespec="seconds")
    write_csv(out, ["path", "label", "source", "time"],
              [(rows[i]["path"], f"cluster_{mapping[truth[i]]}", "human", now) for i in chosen])
    return len(chosen)


@click.command()
@click.option("--dataset", type=click.Choice(DATASETS), default="mnist-5k", show_default=True)
@click.option("--per-class", type=int, default=None, help="Images per class (default: all).")
@click.option("--preset", default=None, help="discover preset (default: none, the hardware plan with the pretrained "
              "trunk; tiny = the from-scratch VGG-11).")
@click.option("--iters", type=int, default=None, help="Iterations of the first, unsupervised run.")
@click.option("--retrain-iters", type=int, default=500, show_default=True)
@click.option("--retrain-warmup-frac", type=float, default=1.0, show_default=True,
              help="Warm-up share of the continuation: 1.0 trains the guiding network (its heads, on a pretrained "
                   "trunk) alone: it decides the clusters, far faster per iteration; 0.0 continues the GAN phase.")
@click.option("--share", type=float, default=0.05, show_default=True, help="Share of images the reviewer corrects.")
@click.option("--device", default="auto", show_default=True)
@click.option("--project", default=None, help="Keep the runs here (default: a temporary folder).")
@click.option("--json-out", type=click.Path(), default=None)
@click.option("--before", "before_run", type=click.Path(exists=True), default=None,
              help="Use this finished unsupervised discover run (trained with --eval-labels folders) as step 1.")
def main(dataset, per_class, preset, iters, retrain_iters, retrain_warmup_frac, share, device, project, json_out,
         before_run) -> None:
    """Print ACC / NMI / ARI before and after semi-supervised retraining, with an unlabelled control."""
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        runs = str(project or Path(tmp) / "runs")
        common = {"preset": preset, "device": device, "project": runs, "eval_labels": "folders", "console": console}
        started = time.perf_counter()
        if before_run:
            first = Path(before_run)
            folder = Path(read_json(first / "config.json")["source"])
        else:
            folder = write_demo_images(Path(tmp) / dataset, dataset, per_class)
            first = discover(folder, iters=iters, name="unsupervised", **common)
        seconds = {"unsupervised": time.perf_counter() - started}
        labelled = simulate_reviewer(first, share, Path(tmp) / "labels.csv")
        again = {"iters": retrain_iters, "from_run": str(first), "warmup_frac": retrain_warmup_frac, **common}
        started = time.perf_counter()
        semi = discover(folder, labels=str(Path(tmp) / "labels.csv"), name="semi", **again)
        seconds["semi"] = time.perf_counter() - started
        started = time.perf_counter()
        control = discover(folder, name="control", **again)
        seconds["control"] = time.perf_counter() - started
        results = {name: read_json(run / "summary.json")["scores"]
                   for name, run in (("unsupervised", first), ("semi", semi), ("control", control))}
    table = Table(title=f"{dataset}: reviewer corrects {labelled} lowest-confidence images ({share:.0%})")
    for col in ("run", "ACC", "NMI", "ARI", "seconds"):
        table.add_column(col, justify="left" if col == "run" else "right")
    names = {"unsupervised": "before (unsupervised)", "semi": f"+ labels, {retrain_iters} iterations",
             "control": f"no labels, {retrain_iters} iterations (control)"}
    for name, s in results.items():
        table.add_row(names[name], f"{s['acc']:.3f}", f"{s['nmi']:.3f}", f"{s['ari']:.3f}", f"{seconds[name]:.0f}")
    console.print(table)
    gain = 100 * (results["semi"]["acc"] - results["unsupervised"]["acc"])
    over_control = 100 * (results["semi"]["acc"] - results["control"]["acc"])
    console.print(f"ACC change: {gain:+.1f} points vs before, {over_control:+.1f} points vs the control")
    if json_out:
        Path(json_out).write_text(json.dumps({"results": results, "labelled": labelled, "seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
