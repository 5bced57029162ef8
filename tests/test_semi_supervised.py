"""Semi-supervised discover: human labels supervise the class head, exclusions are left out, --from fine-tunes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from i2icurate.commands.discover import discover
from i2icurate.data.demo import ANIMAL_CLASSES
from i2icurate.data.sampler import MixedSampler
from i2icurate.engines.tunit import make_sampler
from i2icurate.errors import UserError
from i2icurate.runs import read_csv, write_csv
from tests.conftest import TOY_DISCOVER

QUIET = Console(quiet=True)


def _labels_file(run, tmp_path):
    """A reviewer's labels: 3 images per class -> the class index as cluster, 5 excluded."""
    paths = [r["path"] for r in read_csv(run / "images.csv")]
    rows, excluded = [], []
    for cls, name in enumerate(ANIMAL_CLASSES):
        members = [p for p in paths if p.startswith(name + "/")]
        rows += [(p, f"cluster_{cls}", "human", "2026-11-23T07:00:00") for p in members[:3]]
        if cls < 5:
            excluded.append(members[3])
    rows += [(p, "exclude", "human", "2026-11-23T07:00:00") for p in excluded]
    write_csv(tmp_path / "labels.csv", ["path", "label", "source", "time"], rows)
    return tmp_path / "labels.csv", excluded


def test_labels_and_from_run_train_semi_supervised(toy_discover_run, animal_folder, tmp_path):
    labels, excluded = _labels_file(toy_discover_run, tmp_path)
    run = discover(animal_folder, labels=str(labels), from_run=str(toy_discover_run), iters=6,
                   project=str(tmp_path / "runs"), console=QUIET,
                   **{k: v for k, v in TOY_DISCOVER.items() if k != "preset"})
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["lineage"] == {"from_run": str(toy_discover_run.resolve()), "labels": str(labels.resolve())}
    parent = json.loads((toy_discover_run / "config.json").read_text())
    assert all(cfg[k] == parent[k] for k in ("k", "img_size", "style_dim", "e_width", "g_width"))
    assert (run / "labels.csv").read_bytes() == labels.read_bytes()
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all("loss/sup_ce" in s and np.isfinite(s["loss/sup_ce"]) for s in stats)
    assert len(read_csv(run / "assignments.csv")) == 200  # excluded images are still assigned, just not trained on


def test_sampler_leaves_out_excluded_and_mixes_in_labelled():
    labels = np.full(100, -1)
    labels[[3, 40, 77]] = [1, 2, 3]
    pool = np.setdiff1d(np.arange(100), [5, 6, 7])
    sampler = make_sampler(100, 16, 0, labels, pool)
    assert isinstance(sampler, MixedSampler)
    seen = np.concatenate([sampler.next_indices() for _ in range(60)])
    assert not set(seen) & {5, 6, 7}
    for _ in range(10):
        assert (labels[sampler.next_indices()] >= 0).sum() >= 3  # every batch carries the labelled images
    assert not isinstance(make_sampler(100, 16, 0, None, None), MixedSampler)


def test_bad_labels_and_mismatched_parent_are_one_line_errors(toy_discover_run, animal_folder, tmp_path):
    with pytest.raises(UserError, match="labels file not found"):
        discover(animal_folder, labels=str(tmp_path / "nope.csv"), project=str(tmp_path / "r"), console=QUIET)
    bad = tmp_path / "bad.csv"
    write_csv(bad, ["path", "label"], [("bear/bear_0000.png", "cluster_42")])
    with pytest.raises(UserError, match="this run has clusters 0..9"):
        discover(animal_folder, labels=str(bad), from_run=str(toy_discover_run), iters=2,
                 project=str(tmp_path / "r"), console=QUIET, workers=1)
    new = tmp_path / "new.csv"
    write_csv(new, ["path", "label"], [("bear/bear_0000.png", "new_cluster")])
    with pytest.raises(UserError, match="new_cluster labels need a run on a pretrained trunk: .* vgg11"):
        discover(animal_folder, labels=str(new), from_run=str(toy_discover_run), iters=2,
                 project=str(tmp_path / "r"), console=QUIET, workers=1)
    with pytest.raises(UserError, match="only in a retrain from the reviewed run"):
        discover(animal_folder, labels=str(new), iters=2, project=str(tmp_path / "r"), console=QUIET, workers=1)
    with pytest.raises(UserError, match="do not match this run's options"):
        discover(animal_folder, from_run=str(toy_discover_run), style_dim=16, iters=2, project=str(tmp_path / "r"),
                 console=QUIET, workers=1)
