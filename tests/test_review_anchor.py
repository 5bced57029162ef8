"""Retraining from a reviewed run keeps what the reviewer did not touch, and reports what changed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from rich.console import Console

from i2icurate.commands.discover import discover, grown_weights, review_anchors
from i2icurate.curation.changes import (
    CHANGES_CSV,
    CHANGES_PNG,
    anchor_targets,
    touched_clusters,
)
from i2icurate.data.domains import LABELS_CSV
from i2icurate.engines.checkpoint import LAST, load_checkpoint
from i2icurate.engines.features import CONTENT_NPY, STYLE_NPY, cached_features
from i2icurate.engines.heads import HeadPhase, scan_loss
from i2icurate.engines.loop import Interrupted
from i2icurate.engines.tunit import build_guiding
from i2icurate.runs import CONFIG_FILE, read_csv, read_json, write_csv
from tests.cli_helpers import ctrl_c_after_step
from tests.conftest import TOY_KW

QUIET = Console(quiet=True)


def test_touched_clusters_and_anchors_follow_the_labels():
    before = {"a": 0, "b": 0, "c": 1, "d": 2, "e": 3, "f": 3}
    given = {"a": "cluster_4", "e": "exclude"}  # a moves 0 -> 4; e only leaves the training set
    assert touched_clusters(before, given) == {0, 4}
    anchors = anchor_targets(before, given, ["a", "b", "c", "d", "e", "f", "new"])
    assert anchors.tolist() == [-1, -1, 1, 2, -1, 3, -1]  # the excluded e is not anchored; f keeps cluster 3
    assert touched_clusters(before, {"e": "exclude"}) == set()


def test_the_least_confident_share_of_an_untouched_cluster_stays_free():
    before = {f"p{i}": 0 for i in range(10)} | {f"q{i}": 1 for i in range(5)} | {"r": 2}
    confidence = {f"p{i}": 0.5 + i / 20 for i in range(10)} | {f"q{i}": 0.99 for i in range(5)} | {"r": 0.1}
    paths = list(before)
    given = {"q0": "cluster_2"}  # touches 1 and 2: only cluster 0 is anchored
    anchors = anchor_targets(before, given, paths, confidence, free_share=0.2)
    held = dict(zip(paths, anchors.tolist(), strict=True))
    assert [held[f"p{i}"] for i in range(10)] == [-1, -1] + [0] * 8  # its 2 least sure of 10 are free
    assert all(held[p] == -1 for p in paths if before[p] != 0)
    assert anchor_targets(before, given, paths, confidence, free_share=0.0).tolist() == anchor_targets(
        before, given, paths).tolist()
    # touched clusters keep all but their least confident share too, except one a new cluster is drawn from
    held = dict(zip(paths, anchor_targets(before, given, paths, confidence, 0.2, touched_free_share=0.5).tolist(),
                    strict=True))
    assert [held[f"q{i}"] for i in range(5)] == [-1, -1, -1, 1, 1]  # q0 labelled; 2 of 5 least sure (ties: order)
    opened = anchor_targets(before, {"q0": "new_cluster"}, paths, confidence, 0.2, touched_free_share=0.5)
    assert all(a == -1 for p, a in zip(paths, opened.tolist(), strict=True) if before[p] == 1)


def _retrain(parent, folder, tmp_path, labels, name, w_anchor, iters=300):
    """A heads-only retrain `--from parent`, with these (path, label) rows as labels.csv (None: no labels file)."""
    given = {}
    if labels is not None:
        write_csv(tmp_path / f"{name}.csv", ["path", "label", "source", "time"],
                  [(p, label, "human", "2026-11-29T11:00:00") for p, label in labels])
        given = {"labels": str(tmp_path / f"{name}.csv")}
    return discover(folder, from_run=str(parent), name=name, w_anchor=w_anchor, project=str(tmp_path / "runs"),
                    console=QUIET, **given,
                    **{**TOY_KW, "iters": iters, "warmup_frac": 1.0, "w_sup": 5.0, "log_every": 20})


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


def _phase(run, keep=None):
    """The head phase of a finished toy run, on its own features and weights (optionally with excluded images)."""
    cfg = read_json(run / CONFIG_FILE)
    guiding = build_guiding(cfg)
    guiding.load_state_dict(load_checkpoint(run / LAST)["models"]["E"])
    phase = HeadPhase(guiding, *cached_features(run, len(read_csv(run / "assignments.csv"))), cfg,
                      torch.device("cpu"), keep=keep)
    phase.prepare()
    return phase


def test_excluded_images_leave_every_head_loss_and_nothing_else(pretrained_run):
    n = len(read_csv(pretrained_run / "assignments.csv"))
    keep = torch.ones(n, dtype=torch.bool)
    keep[[3, 50, 120]] = False
    full, masked = _phase(pretrained_run), _phase(pretrained_run, keep)
    clean = torch.tensor([i for i in range(n) if bool(keep[i]) and bool(keep[full.nbrs[i]].all())][:40])
    # a batch without excluded images (or excluded neighbours): the very loss the run without exclusions computes
    a, _ = full.losses(clean, torch.Generator().manual_seed(7), None)
    b, _ = masked.losses(clean, torch.Generator().manual_seed(7), None)
    assert torch.equal(a, b)
    # a batch with them: the loss of the same draws with every pair holding an excluded image dropped
    idx = torch.arange(0, 130, 2)
    got, _ = masked.losses(idx, torch.Generator().manual_seed(7), None)
    gen = torch.Generator().manual_seed(7)
    nbr = full.nbrs[idx, torch.randint(full.nbrs.shape[1], (len(idx),), generator=gen)]
    va, vb = (torch.randint(full.desc.shape[0], (len(idx),), generator=gen) for _ in range(2))
    pairs = keep[idx] & keep[nbr]
    assert not bool(pairs.all())
    x_a, x_b = full.desc[va, idx][pairs], full.desc[vb, nbr][pairs]
    want = sum(scan_loss(F.softmax(h(x_a), 1), F.softmax(h(x_b), 1), full.cfg["w_entropy"])[0]
               for h in full.E.heads)
    assert torch.allclose(got, want)
    # the head scores read the other images only
    assert masked.head_scores() != full.head_scores()


def test_an_exclude_only_review_keeps_every_cluster(pretrained_run, animal_folder, tmp_path):
    before = {r["path"]: int(r["cluster"]) for r in read_csv(pretrained_run / "assignments.csv")}
    excluded = sorted(before)[::40]  # 5 images
    run = _retrain(pretrained_run, animal_folder, tmp_path, [(p, "exclude") for p in excluded], "excl", 2.0,
                   iters=60)
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all("loss/anchor_ce" in s for s in stats)  # no cluster was touched: every one is held
    after = {r["path"]: int(r["cluster"]) for r in read_csv(run / "assignments.csv")}
    for cluster in set(before.values()):
        members = [p for p, c in before.items() if c == cluster and p not in excluded]
        kept = sum(after[p] == cluster for p in members) / len(members)
        assert kept >= 0.9, (cluster, kept)


def test_grown_weights_keep_the_parent_rows_and_add_one():
    parent = {"head.weight": torch.arange(6.0).reshape(3, 2), "head.bias": torch.ones(3),
              "cont.weight": torch.ones(4, 2)}
    own = {"head.weight": torch.full((4, 2), -1.0), "head.bias": torch.zeros(4), "cont.weight": torch.zeros(4, 2)}
    grown = grown_weights(parent, own)
    assert grown["head.weight"].tolist() == [[0, 1], [2, 3], [4, 5], [-1, -1]]
    assert grown["head.bias"].tolist() == [1, 1, 1, 0]
    assert torch.equal(grown["cont.weight"], parent["cont.weight"])  # same shape: the parent's, unchanged


def test_new_cluster_labels_form_one_new_cluster(pretrained_run, animal_folder, tmp_path, monkeypatch):
    before = {r["path"]: int(r["cluster"]) for r in read_csv(pretrained_run / "assignments.csv")}
    k = read_json(pretrained_run / CONFIG_FILE)["k"]
    # the reviewer tags six images of the largest cluster's most common class new_cluster
    source = int(np.bincount(list(before.values())).argmax())
    members = sorted(p for p, c in before.items() if c == source)
    cls = max({p.split("/")[0] for p in members}, key=lambda c: sum(p.startswith(c + "/") for p in members))
    tagged = [p for p in members if p.startswith(cls + "/")][:6]
    # interrupted half-way, then resumed: the run recorded K+1 and where the new_cluster labels go
    ctrl_c_after_step(monkeypatch, 150)
    with pytest.raises(Interrupted):
        _retrain(pretrained_run, animal_folder, tmp_path, [(p, "new_cluster") for p in tagged], "new", 1.0)
    monkeypatch.undo()
    run = tmp_path / "runs" / "discover" / "new1"
    cfg = read_json(run / CONFIG_FILE)
    assert cfg["k"] == k + 1 and cfg["lineage"]["new_cluster"] == k
    assert load_checkpoint(run / LAST)["models"]["E"]["heads.0.weight"].shape[0] == k + 1
    discover(resume=str(run), console=QUIET)

    after = {r["path"]: int(r["cluster"]) for r in read_csv(run / "assignments.csv")}
    assert all(after[p] == k for p in tagged)  # the new cluster holds the tagged images
    assert read_json(run / "summary.json")["k"] == k + 1
    for cluster in set(range(k)) - {source}:  # every untouched cluster keeps >= 90 % of its members
        cluster_members = [p for p, c in before.items() if c == cluster]
        if cluster_members:
            kept = sum(after[p] == cluster for p in cluster_members) / len(cluster_members)
            assert kept >= 0.9, (cluster, kept)
    rows = read_csv(run / CHANGES_CSV)
    assert {r["path"] for r in rows if r["labelled"] == "yes"} == set(tagged)
    assert {r["path"] for r in rows if r["after"] == str(k)} == {p for p in before if after[p] == k}
    # before (K rows) -> after (K+1 columns); count_matrix_png's cells are 34 px, its margins 68 and 94 px
    with Image.open(run / CHANGES_PNG) as png:
        assert ((png.width - 68) / 34, (png.height - 94) / 34) == (k + 1, k)


def test_a_retrain_frees_the_share_its_config_names(tmp_path):
    parent, run = tmp_path / "parent", tmp_path / "run"
    parent.mkdir()
    run.mkdir()
    paths = [f"c{c}/{i}.png" for c in range(2) for i in range(20)]
    write_csv(parent / "assignments.csv", ["path", "cluster", "confidence"],
              [(p, p[1], f"{0.5 + int(p.split('/')[1][:-4]) / 40:.3f}") for p in paths])
    write_csv(run / LABELS_CSV, ["path", "label", "source", "time"], [("c1/0.png", "cluster_1", "human", "t")])
    cfg = {"from_run": str(parent), "w_anchor": 2.0}
    held = review_anchors(run, cfg, paths, QUIET)
    assert held.tolist() == [0] * 20 + [-1] * 20  # cluster 1 is touched; all of cluster 0 is held
    held = review_anchors(run, {**cfg, "anchor_free_share": 0.25}, paths, QUIET)
    assert held.tolist() == [-1] * 5 + [0] * 15 + [-1] * 20  # its 5 least confident images are free
    # a touched cluster keeps all but its least confident share too: the labelled image, then the 5 least sure others
    held = review_anchors(run, {**cfg, "anchor_free_share": 0.25, "anchor_touched_free_share": 0.25}, paths, QUIET)
    assert held.tolist() == [-1] * 5 + [0] * 15 + [-1] * 6 + [1] * 14
