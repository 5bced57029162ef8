"""Do a reviewer's corrections improve the clusters, and leave alone what they do not touch? Measured.

1. `discover` on labelled real data (class-named folders, labels used only for scoring): ACC before.
2. Simulated reviewers write labels.csv as `sync` would, each label being the cluster the image's true class maps to
   (Hungarian matching of step 1):
   - `lowest`: the `--share` (5 %) lowest-confidence images;
   - `split`: only splits the most merged cluster: a handful (`--handful`, 10) of the images of its largest foreign
     class go to that class's cluster;
   - `half`: the lowest-confidence `--share` of the images of half of the clusters only;
   - `exclude`: marks the `--handful` lowest-confidence images `exclude`;
   - `new`: gives a class that leads no cluster (the largest class that is the majority of none) a cluster of its
     own: a handful of its images, from the cluster holding most of it, are tagged `new_cluster` (the retrain has
     K+1 clusters; ACC's Hungarian matching takes them all). When every class already leads a cluster, a reviewer
     would move images to that cluster instead (that is `split`), so `new` is skipped and the reason recorded.
3. `discover --labels labels.csv --from RUN` for `--retrain-iters` iterations per reviewer: ACC after.
4. Control: the same continuation without labels, so the gain from the labels is separated from the gain from
   training longer. For each reviewer the table gives ACC against the control and the smallest share of its members
   that an untouched cluster (held images, no label in it, no label pointing to it) kept.

    python bench/review_semi.py --dataset mnist-5k                 # CPU, the default plan
    python bench/review_semi.py --before runs/discover/animal-mnist1   # on a finished run
    python bench/review_semi.py --before runs/discover/animal-mnist1 --reviewer new   # one reviewer only
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table
from scipy.optimize import linear_sum_assignment

from i2icurate.commands.discover import discover
from i2icurate.curation.changes import parent_clusters, touched_clusters
from i2icurate.data.demo import DATASETS, write_demo_images
from i2icurate.data.domains import EXCLUDE, LABELS_HEADER, NEW_CLUSTER
from i2icurate.data.labels import folder_labels
from i2icurate.runs import read_csv, read_json, write_csv


def class_to_cluster(truth: list[str], clusters: np.ndarray) -> dict[str, int]:
    """The cluster each true class is matched to (Hungarian on the contingency table, as for ACC); with fewer
    clusters than classes, the unmatched classes are absent (a reviewer has no cluster to name for them)."""
    classes = sorted(set(truth))
    k = int(clusters.max()) + 1
    counts = np.zeros((len(classes), max(k, len(classes))), dtype=np.int64)
    for t, c in zip(truth, clusters, strict=True):
        counts[classes.index(t), c] += 1
    rows, cols = linear_sum_assignment(-counts)
    return {classes[r]: int(c) for r, c in zip(rows, cols, strict=True) if c < k}


Reviewer = Callable[[list[dict[str, str]], list[str], np.ndarray, np.ndarray, dict[str, int]], list[tuple[str, str]]]


def lowest(rows, truth, clusters, confidence, mapping, share: float = 0.05, handful: int = 10):
    """The lowest-confidence `share` of images, each labelled with its true class's cluster (those of a class without
    one left unlabelled)."""
    chosen = np.argsort(confidence)[: max(1, int(round(share * len(rows))))]
    return [(rows[i]["path"], f"cluster_{mapping[truth[i]]}") for i in chosen if truth[i] in mapping]


def least_confident(truth, clusters, confidence, cls: str, cluster: int, handful: int) -> list[int]:
    """Indices of the `handful` lowest-confidence images of class `cls` in cluster `cluster`."""
    return [i for i in np.argsort(confidence) if clusters[i] == cluster and truth[i] == cls][:handful]


def most_merged(truth, clusters, confidence, mapping, handful: int) -> tuple[str | None, list[int]]:
    """The largest foreign class inside any cluster (a class matched to another cluster) and the indices of its
    `handful` lowest-confidence images in that cluster; (None, []) when every cluster is pure."""
    best = (0, None, None)
    for c in sorted(set(clusters.tolist())):
        foreign = [t for t, cc in zip(truth, clusters, strict=True) if cc == c and mapping.get(t, c) != c]
        if foreign:
            cls, count = max(((t, foreign.count(t)) for t in set(foreign)), key=lambda x: (x[1], x[0]))
            best = max(best, (count, c, cls), key=lambda x: x[0])
    _, cluster, cls = best
    if cluster is None:
        return None, []
    return cls, least_confident(truth, clusters, confidence, cls, cluster, handful)


def split(rows, truth, clusters, confidence, mapping, share: float = 0.05, handful: int = 10):
    """A handful of images of the most merged cluster's largest foreign class, moved to that class's cluster."""
    cls, members = most_merged(truth, clusters, confidence, mapping, handful)
    return [(rows[i]["path"], f"cluster_{mapping[cls]}") for i in members]


def leaderless_class(truth, clusters) -> tuple[str | None, int | None]:
    """The largest class that is the majority of no cluster, and the cluster holding most of it ((None, None) when
    every class leads a cluster)."""
    leaders = set()
    for c in set(clusters.tolist()):
        inside = [t for t, cc in zip(truth, clusters, strict=True) if cc == c]
        leaders.add(max(set(inside), key=lambda t: (inside.count(t), t)))
    orphans = sorted(set(truth) - leaders, key=lambda t: (-truth.count(t), t))
    if not orphans:
        return None, None
    cls = orphans[0]
    where = [int(cc) for t, cc in zip(truth, clusters, strict=True) if t == cls]
    return cls, max(set(where), key=where.count)


def new(rows, truth, clusters, confidence, mapping, share: float = 0.05, handful: int = 10):
    """A handful of the lowest-confidence images of a class that leads no cluster, from the cluster holding most of
    it, tagged new_cluster; none when every class leads a cluster."""
    cls, cluster = leaderless_class(truth, clusters)
    if cls is None:
        return []
    return [(rows[i]["path"], NEW_CLUSTER) for i in least_confident(truth, clusters, confidence, cls, cluster, handful)]


SKIP_REASON = {"new": "every class already leads a cluster: a reviewer moves its strays there (the split reviewer)",
               "split": "every cluster is pure"}


def half(rows, truth, clusters, confidence, mapping, share: float = 0.05, handful: int = 10):
    """Like `lowest`, within the first half of the clusters only."""
    k = int(clusters.max()) + 1
    inside = np.flatnonzero(clusters < k // 2)
    chosen = inside[np.argsort(confidence[inside])][: max(1, int(round(share * len(inside))))]
    return [(rows[i]["path"], f"cluster_{mapping[truth[i]]}") for i in chosen if truth[i] in mapping]


def exclude(rows, truth, clusters, confidence, mapping, share: float = 0.05, handful: int = 10):
    """The `handful` lowest-confidence images marked exclude."""
    return [(rows[i]["path"], "exclude") for i in np.argsort(confidence)[:handful]]


REVIEWERS: dict[str, Reviewer] = {"lowest": lowest, "split": split, "half": half, "exclude": exclude, "new": new}


def simulate_reviewer(run: Path, name: str, out: Path, share: float, handful: int) -> list[tuple[str, str]]:
    """Write reviewer `name`'s labels of `run` to `out` (labels.csv format); returns (path, label) rows."""
    rows = read_csv(run / "assignments.csv")
    truth = folder_labels([r["path"] for r in rows])
    clusters = np.array([int(r["cluster"]) for r in rows])
    confidence = np.array([float(r["confidence"]) for r in rows])
    labels = REVIEWERS[name](rows, truth, clusters, confidence, class_to_cluster(truth, clusters), share, handful)
    now = dt.datetime.now().isoformat(timespec="seconds")
    write_csv(out, LABELS_HEADER, [(p, label, "human", now) for p, label in labels])
    return labels


def untouched_kept(before: Path, after: Path, labels: list[tuple[str, str]]) -> float | None:
    """The smallest share of its members that a cluster no label touched kept (None if every cluster was touched).
    Excluded images left the folder's training set and count as members of nothing; an exclusion touches nothing."""
    old = parent_clusters(before)
    new = {r["path"]: int(r["cluster"]) for r in read_csv(after / "assignments.csv")}
    given = dict(labels)
    touched = touched_clusters(old, given)
    shares = []
    for c in sorted(set(old.values()) - touched):
        members = [p for p, cc in old.items() if cc == c and given.get(p) != EXCLUDE]
        shares.append(sum(new[p] == c for p in members) / len(members))
    return min(shares) if shares else None


def new_cluster_content(before: Path, after: Path, labels: list[tuple[str, str]]) -> dict | None:
    """What the cluster formed from new_cluster labels holds after the retrain: its size, how many tagged images
    it kept, and its largest true class with that class's count (None when no label was new_cluster)."""
    tagged = {p for p, label in labels if label == NEW_CLUSTER}
    if not tagged:
        return None
    k = read_json(after / "config.json")["lineage"]["new_cluster"]
    inside = [r["path"] for r in read_csv(after / "assignments.csv") if int(r["cluster"]) == k]
    truth = folder_labels(inside) if inside else []
    top = max(set(truth), key=truth.count) if truth else None
    return {"cluster": k, "size": len(inside), "tagged_inside": len(tagged & set(inside)), "tagged": len(tagged),
            "top_class": top, "top_class_count": truth.count(top) if top else 0}


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
@click.option("--reviewer", "reviewers", multiple=True, type=click.Choice(tuple(REVIEWERS)), default=tuple(REVIEWERS),
              help="Simulated reviewers (repeatable; default: all).")
@click.option("--share", type=float, default=0.05, show_default=True, help="Share of images the reviewer corrects.")
@click.option("--handful", type=int, default=10, show_default=True,
              help="Images of the split, new and exclude reviewers.")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="discover --threads of every run (default: its own choice).")
@click.option("--project", default=None, help="Keep the runs here (default: a temporary folder).")
@click.option("--json-out", type=click.Path(), default=None)
@click.option("--before", "before_run", type=click.Path(exists=True), default=None,
              help="Use this finished unsupervised discover run (trained with --eval-labels folders) as step 1.")
def main(dataset, per_class, preset, iters, retrain_iters, retrain_warmup_frac, reviewers, share, handful, device,
         threads, project, json_out, before_run) -> None:
    """Print ACC before and after semi-supervised retraining for each reviewer, against an unlabelled control."""
    console = Console()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = str(project or Path(tmp) / "runs")
        common = {"preset": preset, "device": device, "project": runs, "eval_labels": "folders", "console": console,
                  "threads": threads}
        if before_run:
            first = Path(before_run)
            folder = Path(read_json(first / "config.json")["source"])
            dataset = first.name
        else:
            folder = write_demo_images(Path(tmp) / dataset, dataset, per_class)
            first = discover(folder, k=10, iters=iters, name="unsupervised", **common)  # the sets' 10 classes
        again = {"iters": retrain_iters, "from_run": str(first), "warmup_frac": retrain_warmup_frac, **common}
        started = time.perf_counter()
        control = discover(folder, name="control", **again)
        results["control"] = {"scores": read_json(control / "summary.json")["scores"],
                              "seconds": time.perf_counter() - started, "labelled": 0,
                              "untouched_kept": untouched_kept(first, control, [])}  # every cluster, for reference
        for name in reviewers:
            labels = simulate_reviewer(first, name, Path(tmp) / f"{name}.csv", share, handful)
            if not labels:
                results[name] = {"skipped": SKIP_REASON.get(name, "no image to label")}
                continue
            started = time.perf_counter()
            semi = discover(folder, labels=str(Path(tmp) / f"{name}.csv"), name=f"semi-{name}", **again)
            results[name] = {"scores": read_json(semi / "summary.json")["scores"], "labelled": len(labels),
                             "seconds": time.perf_counter() - started, "untouched_kept": untouched_kept(first, semi,
                                                                                                       labels),
                             "new_cluster": new_cluster_content(first, semi, labels)}
        before = read_json(first / "summary.json")["scores"]
    table = Table(title=f"{dataset}: ACC before {before['acc']:.3f}; retrain {retrain_iters} iterations per reviewer")
    for col in ("reviewer", "labels", "ACC", "vs control", "NMI", "untouched clusters kept (min)", "seconds"):
        table.add_column(col, justify="left" if col == "reviewer" else "right")
    control_acc = results["control"]["scores"]["acc"]
    for name, r in results.items():
        if "skipped" in r:
            table.add_row(name, "0", "skipped", "-", "-", "-", "-")
            continue
        s = r["scores"]
        kept = r.get("untouched_kept")
        table.add_row(name, str(r["labelled"]), f"{s['acc']:.3f}", f"{100 * (s['acc'] - control_acc):+.1f}",
                      f"{s['nmi']:.3f}", "-" if kept is None else f"{100 * kept:.1f} %", f"{r['seconds']:.0f}")
    console.print(table)
    for name, r in results.items():
        if "skipped" in r:
            console.print(f"{name}: skipped, {r['skipped']}")
        grown = r.get("new_cluster")
        if grown:
            console.print(f"{name}: new cluster {grown['cluster']} holds {grown['size']} images, "
                          f"{grown['tagged_inside']} of the {grown['tagged']} tagged; {grown['top_class_count']} "
                          f"of them are {grown['top_class']}")
    if json_out:
        Path(json_out).write_text(json.dumps({"before": before, "results": results}, indent=2))


if __name__ == "__main__":
    main()
