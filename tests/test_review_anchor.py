"""Retraining from a reviewed run keeps what the reviewer did not touch, and reports what changed."""

from __future__ import annotations

import json

import numpy as np
from rich.console import Console

from i2icurate.commands.discover import discover
from i2icurate.curation.changes import CHANGES_CSV, CHANGES_PNG, anchor_targets, touched_clusters
from i2icurate.engines.features import CONTENT_NPY, STYLE_NPY
from i2icurate.runs import read_csv, write_csv
from tests.conftest import TOY_KW

QUIET = Console(quiet=True)


def test_touched_clusters_and_anchors_follow_the_labels():
    before = {"a": 0, "b": 0, "c": 1, "d": 2, "e": 3, "f": 3}
    given = {"a": "cluster_4", "e": "exclude"}  # a moves 0 -> 4; e is left out of cluster 3
    assert touched_clusters(before, given) == {0, 3, 4}
    anchors = anchor_targets(before, given, ["a", "b", "c", "d", "e", "f", "new"])
    assert anchors.tolist() == [-1, -1, 1, 2, -1, -1, -1]


def _retrain(parent, folder, tmp_path, labels, name, w_anchor):
    write_csv(tmp_path / f"{name}.csv", ["path", "label", "source", "time"],
              [(p, label, "human", "2026-11-29T11:00:00") for p, label in labels])
    return discover(folder, labels=str(tmp_path / f"{name}.csv"), from_run=str(parent), name=name, w_anchor=w_anchor,
                    project=str(tmp_path / "runs"), console=QUIET,
                    **{**TOY_KW, "iters": 300, "warmup_frac": 1.0, "w_sup": 5.0, "log_every": 20})


def test_a_correction_moves_what_it_names_and_keeps_untouched_clusters(pretrained_run, animal_folder, tmp_path):
    before = {r["path"]: int(r["cluster"]) for r in read_csv(pretrained_run / "assignments.csv")}
    sizes = np.bincount(list(before.values()), minlength=10)
    source, target = int(sizes.argmax()), int(sizes.argmin())
    # the reviewer moves six images of the largest cluster into the smallest one
    moved = [p for p, c in before.items() if c == source][:6]
    run = _retrain(pretrained_run, animal_folder, tmp_path, [(p, f"cluster_{target}") for p in moved], "semi", 1.0)
    after = {r["path"]: int(r["cluster"]) for r in read_csv(run / "assignments.csv")}
    assert all(after[p] == target for p in moved)  # the labels moved what they name
    for cluster in set(range(10)) - {source, target}:  # every untouched cluster keeps >= 90 % of its members
        members = [p for p, c in before.items() if c == cluster]
        if members:
            kept = sum(after[p] == cluster for p in members) / len(members)
            assert kept >= 0.9, (cluster, kept)

    rows = read_csv(run / CHANGES_CSV)
    assert {r["path"] for r in rows} == {p for p in before if before[p] != after[p]}  # matches the assignments
    assert all(int(r["before"]) == before[r["path"]] and int(r["after"]) == after[r["path"]] for r in rows)
    assert {r["path"] for r in rows if r["labelled"] == "yes"} == {p for p in moved if before[p] != after[p]}
    assert (run / CHANGES_PNG).is_file()
    for name in (CONTENT_NPY, STYLE_NPY):  # same images, same trunk: the parent's features were reused
        assert (run / name).read_bytes() == (pretrained_run / name).read_bytes()
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all("loss/anchor_ce" in s for s in stats)
