"""`i2icurate review` / `sync` against real FiftyOne and MongoDB, on a private database.

The reviewer's edits are made exactly as the App stores them: sample tags through the App server's own /tag route
(and `tag_samples`, which that route calls), and the plugin operator through /operators/execute.
"""

from __future__ import annotations

import configparser
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from i2icurate.errors import UserError
from i2icurate.runs import read_csv, read_json, write_csv

# FiftyOne reads its configuration when it is first imported (inside the fixture below) and its App server and
# database inherit the environment: a private database name from the start of the session, so that no test can
# touch a real dataset whichever module imports fiftyone first.
os.environ["FIFTYONE_DATABASE_NAME"] = f"i2icurate-test-{uuid.uuid4().hex[:8]}"
os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
os.environ["FIFTYONE_DATABASE_VALIDATION"] = "false"

QUIET = Console(quiet=True)
PLUGIN = "@i2icurate/review"


@pytest.fixture(scope="module")
def fo(tmp_path_factory):
    """fiftyone, imported through i2icurate on a private database; deletes the datasets the tests made."""
    from i2icurate.curation.fo_env import import_fiftyone

    if "fiftyone" not in sys.modules:  # otherwise its settings are fixed already (another module's private ones)
        os.environ["FIFTYONE_DATABASE_DIR"] = str(tmp_path_factory.mktemp("fo_db"))
    module = import_fiftyone()
    before = set(module.list_datasets())
    yield module
    for name in set(module.list_datasets()) - before:
        module.delete_dataset(name)


def _copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("cache", "tb", "last.pt"))
    return dst


@pytest.fixture(scope="module")
def run(toy_discover_run, tmp_path_factory) -> Path:
    """A private copy of the shared toy run (sync writes labels.csv into it)."""
    return _copy_run(toy_discover_run, tmp_path_factory.mktemp("review") / "exp1")


@pytest.fixture(scope="module")
def built(fo, run):
    """The run's dataset, built once, with the ingest rate printed."""
    from i2icurate.curation.dataset import build_dataset

    start = time.perf_counter()
    dataset = build_dataset(run, QUIET)
    seconds = time.perf_counter() - start
    print(f"\nreview ingest, toy run: {len(dataset)} samples in {seconds:.2f} s = {len(dataset) / seconds:,.0f} "
          f"samples/s (includes brain runs and saved views)")
    return dataset


def test_review_builds_one_sample_per_image_with_fields_views_and_brain_runs(built, run):
    from i2icurate.curation.dataset import dataset_name

    dataset = built
    rows = read_csv(run / "assignments.csv")
    config_source = Path(read_json(run / "config.json")["source"])
    assert dataset.name == dataset_name(run) and dataset.persistent
    assert dataset.info["i2icurate_run"] == str(run.resolve())
    assert len(dataset) == len(rows) and len(set(dataset.values("filepath"))) == len(rows)

    embeddings = np.load(run / "embeddings.npy")
    by_path = {s.i2i_path: s for s in dataset.iter_samples()}
    for i in (0, len(rows) // 2, len(rows) - 1):
        row, sample = rows[i], by_path[rows[i]["path"]]
        assert sample.filepath == str(config_source / row["path"]) and Path(sample.filepath).is_file()
        assert sample.pseudo_domain.label == f"cluster_{row['cluster']}"
        assert sample.pseudo_domain.confidence == pytest.approx(float(row["confidence"]))
        assert sample.margin == pytest.approx(float(row["margin"]))
        assert sample.outlier_score == pytest.approx(float(row["outlier_score"]))
        assert sample.duplicate is bool(row["duplicate_of"]) and sample.duplicate_of == (row["duplicate_of"] or None)
        np.testing.assert_array_equal(sample.embedding, embeddings[i])
        assert sample.human_label is None

    assert sorted(dataset.list_brain_runs()) == ["style_sim", "umap"]
    index = dataset.load_brain_results("style_sim")
    assert index.total_index_size == len(rows)
    query = dataset.first().id
    assert dataset.sort_by_similarity(query, k=3, brain_key="style_sim").first().id == query
    assert dataset.load_brain_results("umap").points.shape == (len(rows), 2)

    clusters = sorted({int(r["cluster"]) for r in rows})
    views = dataset.list_saved_views()
    assert set(views) == {f"cluster_{c}" for c in clusters} | {"low_confidence", "outliers"}
    for c in clusters:
        assert len(dataset.load_saved_view(f"cluster_{c}")) == sum(int(r["cluster"]) == c for r in rows)
    low = dataset.load_saved_view("low_confidence").values("pseudo_domain.confidence")
    conf = np.array([float(r["confidence"]) for r in rows])
    assert low == sorted(low) and len(low) == int((conf < max(np.percentile(conf, 10), 0.5)).sum())
    outliers = dataset.load_saved_view("outliers").values("outlier_score")
    assert outliers == sorted(outliers, reverse=True) and len(outliers) >= math.ceil(0.02 * len(rows))
    assert min(outliers) >= sorted((float(r["outlier_score"]) for r in rows), reverse=True)[len(outliers) - 1]


def test_rebuild_is_idempotent_updates_values_and_keeps_reviews(fo, toy_discover_run, tmp_path):
    from i2icurate.curation.dataset import build_dataset

    run = _copy_run(toy_discover_run, tmp_path / "exp1")
    first = build_dataset(run, QUIET)
    ids = first.values("id")
    reviewed = ids[:2]
    first.select(reviewed).tag_samples("cluster:1")
    cleared = first.select(ids[-1:])
    cleared.set_values("pseudo_domain", [None])
    cleared.set_values("margin", [-1.0])

    rows = read_csv(run / "assignments.csv")  # a re-export that moved the first 5 images to another cluster
    for row in rows[:5]:
        row["cluster"], row["confidence"] = str((int(row["cluster"]) + 1) % 10), "0.987654"
    write_csv(run / "assignments.csv", list(rows[0]), [list(r.values()) for r in rows])

    second = build_dataset(run, QUIET)
    assert len(second) == len(rows) and sorted(second.values("id")) == sorted(ids)
    labels = dict(zip(*second.values(["i2i_path", "pseudo_domain.label"]), strict=True))
    conf = dict(zip(*second.values(["i2i_path", "pseudo_domain.confidence"]), strict=True))
    for row in rows[:5]:
        assert labels[row["path"]] == f"cluster_{row['cluster']}" and conf[row["path"]] == pytest.approx(0.987654)
    assert second.select(reviewed).values("tags") == [["cluster:1"], ["cluster:1"]]
    restored = second.select(ids[-1:]).first()
    row = next(r for r in rows if r["path"] == restored.i2i_path)
    assert restored.pseudo_domain.label == f"cluster_{row['cluster']}"
    assert restored.margin == pytest.approx(float(row["margin"]))
    assert sorted(second.list_brain_runs()) == ["style_sim", "umap"]
    moved = int(rows[0]["cluster"])
    assert len(second.load_saved_view(f"cluster_{moved}")) == sum(int(r["cluster"]) == moved for r in rows)
    third = build_dataset(run, QUIET)  # nothing changed: nothing written, nothing duplicated
    assert len(third) == len(rows)


def test_ingest_in_bulk_batches_adds_every_image_once(fo, toy_discover_run, tmp_path, monkeypatch):
    import i2icurate.curation.dataset as dataset_module

    monkeypatch.setattr(dataset_module, "INGEST_BATCH", 37)  # 200 images: 5 full batches and a partial one
    run = _copy_run(toy_discover_run, tmp_path / "exp1")
    dataset = dataset_module.build_dataset(run, QUIET)
    rows = read_csv(run / "assignments.csv")
    embeddings = np.load(run / "embeddings.npy")
    assert len(dataset) == len(rows)
    stored = dict(zip(*dataset.values(["i2i_path", "embedding"]), strict=True))
    assert sorted(stored) == sorted(r["path"] for r in rows)
    for row, vector in zip(rows, embeddings, strict=True):
        np.testing.assert_allclose(stored[row["path"]], vector, rtol=1e-6)


def test_plugin_is_discovered_and_ships(fo):
    import fiftyone.operators as foo
    import fiftyone.plugins as fop

    from i2icurate.curation.fo_env import PLUGIN_DIR

    assert PLUGIN in [p.name for p in fop.list_plugins()]
    uris = {op.uri for op in foo.list_operators()}
    assert {f"{PLUGIN}/assign_cluster", f"{PLUGIN}/clear_human_label"} <= uris
    assert (PLUGIN_DIR / "fiftyone.yml").is_file()
    cfg = configparser.ConfigParser()
    cfg.read(PLUGIN_DIR.parents[2] / "setup.cfg")
    assert "fiftyone.yml" in cfg["options.package_data"]["i2icurate.curation.plugin"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_review_edits_then_sync_appends_exactly_the_changes(fo, built, run, toy_discover_run):
    """Integration: reviewer edits as the App stores them -> sync -> labels.csv rows appended, once."""
    import fiftyone.operators as foo
    import requests

    from i2icurate.commands.review import app_url
    from i2icurate.commands.sync import sync

    dataset = built
    paths = sorted(dataset.values("i2i_path"))
    by_path = dict(zip(*dataset.values(["i2i_path", "id"]), strict=True))
    ids = lambda group: [by_path[p] for p in group]  # noqa: E731
    earlier = [["path", "label", "source", "time"], [paths[0], "cluster_9", "human", "2024-01-01T00:00:00+00:00"],
               [paths[1], "exclude", "human", "2024-01-01T00:00:00+00:00"]]
    write_csv(run / "labels.csv", earlier[0], earlier[1:])
    before = (run / "labels.csv").read_bytes()

    tagged3, excluded, both = paths[2:5], paths[5:7], paths[7:8]
    dataset.select(ids(tagged3)).tag_samples("cluster:3")
    dataset.select(ids(excluded)).tag_samples("exclude")
    dataset.select(ids(both)).tag_samples(["cluster:2", "exclude"])  # conflict: exclude wins
    dataset.select(ids(paths[8:9])).tag_samples(["cluster:2", "cluster:4"])  # ambiguous: skipped
    dataset.select(ids(paths[9:10])).tag_samples("cluster:99")  # no such cluster: skipped
    dataset.select(ids(paths[10:11])).tag_samples("reviewed")  # unrelated tag: ignored
    dataset.select(ids(paths[1:2])).tag_samples("exclude")  # same as labels.csv already says: not appended
    # the operator, run headless exactly as the App runs it: human_label wins over tags
    foo.execute_operator(f"{PLUGIN}/assign_cluster", dataset=dataset, selected=ids(paths[0:1] + paths[11:12]),
                         params={"label": "new_cluster"})
    dataset.select(ids(paths[12:13])).tag_samples("cluster:6")
    foo.execute_operator(f"{PLUGIN}/assign_cluster", dataset=dataset, selected=ids(paths[12:13]),
                         params={"label": "cluster_5"})
    with pytest.raises(Exception, match="Invalid enum value"):
        foo.execute_operator(f"{PLUGIN}/assign_cluster", dataset=dataset, selected=ids(paths[13:14]),
                             params={"label": "cluster_10"})

    # ... and through the real App server, with the requests the App's grid and operator browser send
    port = _free_port()
    session = fo.launch_app(dataset, port=port, address="127.0.0.1", auto=False)
    try:
        base = f"http://127.0.0.1:{port}"
        assert requests.get(app_url("0.0.0.0", port, dataset.slug), timeout=30).status_code == 200
        listed = requests.post(f"{base}/operators", json={"dataset_name": dataset.name}, timeout=60).json()
        assert f"{PLUGIN}/assign_cluster" in {op["uri"] for op in listed["operators"]}
        r = requests.post(f"{base}/tag", json={"dataset": dataset.name, "view": [], "sample_ids": ids(paths[14:15]),
                                               "changes": {"cluster:8": True}}, timeout=60)
        assert r.status_code == 200
        r = requests.post(f"{base}/operators/execute", timeout=60, json={
            "dataset_name": dataset.name, "operator_uri": f"{PLUGIN}/assign_cluster", "view": [],
            "selected": ids(paths[15:17]), "params": {"label": "exclude"}})
        assert r.status_code == 200 and r.json()["error"] is None and r.json()["result"]["assigned"] == 2
        inputs = requests.post(f"{base}/operators/resolve-type", timeout=60, json={
            "dataset_name": dataset.name, "operator_uri": f"{PLUGIN}/assign_cluster", "view": [],
            "target": "inputs", "selected": [], "params": {}}).json()
        k = int(fo.load_dataset(dataset.name).info["i2icurate_k"])
        assert inputs["type"]["properties"]["label"]["type"]["values"] == (
            [f"cluster_{c}" for c in range(k)] + ["exclude", "new_cluster"])
    finally:
        session.close()

    appended = sync(run, console=QUIET)
    expected = {**dict.fromkeys(tagged3, "cluster_3"), **dict.fromkeys(excluded + both, "exclude"),
                paths[0]: "new_cluster", paths[11]: "new_cluster", paths[12]: "cluster_5", paths[14]: "cluster_8",
                paths[15]: "exclude", paths[16]: "exclude"}
    assert {r["path"]: r["label"] for r in appended} == expected
    assert next(r for r in appended if r["path"] == paths[0])["old"] == "cluster_9"
    text = (run / "labels.csv").read_bytes()
    assert text.startswith(before)  # earlier rows untouched
    rows = read_csv(run / "labels.csv")
    assert [list(r.values()) for r in rows[:2]] == earlier[1:]
    assert {r["path"]: r["label"] for r in rows[2:]} == expected and len(rows) == 2 + len(expected)
    assert {r["source"] for r in rows[2:]} == {"human"} and all("T" in r["time"] for r in rows[2:])

    assert sync(run, console=QUIET) == []  # nothing new
    assert (run / "labels.csv").read_bytes() == text

    from i2icurate.data.domains import human_labels

    assert human_labels(run)[paths[0]] == "new_cluster"  # newest row wins for the reader of labels.csv

    # ... and the corrections drive a semi-supervised retrain that starts from this run
    import json

    from i2icurate.commands.discover import discover
    from tests.conftest import TOY_DISCOVER

    source = json.loads((run / "config.json").read_text())["source"]
    shutil.copyfile(toy_discover_run / "last.pt", run / "last.pt")  # the private copy left the weights out
    toy = {k: v for k, v in TOY_DISCOVER.items() if k != "preset"}
    # this toy run trains the from-scratch VGG-11, which cannot grow the cluster the new_cluster labels ask for
    with pytest.raises(UserError, match="new_cluster labels need a run on a pretrained trunk"):
        discover(source, labels=str(run / "labels.csv"), from_run=str(run), iters=4, console=QUIET,
                 project=str(run.parent / "retrain"), **toy)
    assert not (run.parent / "retrain").exists()  # refused before any run folder was made
    # without those rows the synced labels drive the retrain
    kept = run.parent / "kept.csv"
    write_csv(kept, ["path", "label", "source", "time"],
              [list(r.values()) for r in rows if r["label"] != "new_cluster"])
    retrained = discover(source, labels=str(kept), from_run=str(run), iters=4, console=QUIET,
                         project=str(run.parent / "retrain"), **toy)
    assert (retrained / "labels.csv").read_bytes() == kept.read_bytes()  # the labels round-trip into the new run
    lineage = json.loads((retrained / "config.json").read_text())["lineage"]
    assert lineage == {"from_run": str(run.resolve()), "labels": str(kept.resolve())}
    assert human_labels(retrained) == {p: label for p, label in human_labels(run).items() if p not in
                                       (paths[0], paths[11])} | {paths[0]: "cluster_9"}


def test_review_command_builds_then_serves_the_app_until_ctrl_c(fo, built, run, monkeypatch):
    from i2icurate.commands.review import review

    calls = {}

    class Session:
        def wait(self, wait=3):
            calls["wait"] = wait
            raise KeyboardInterrupt

        def close(self):
            calls["closed"] = True

    def launch_app(dataset, **kwargs):
        calls["launch"] = (dataset.name, kwargs)
        return Session()

    monkeypatch.setattr(fo, "launch_app", launch_app)
    console = Console(record=True, width=200)
    dataset = review(run, port=5252, address="0.0.0.0", remote=True, console=console)
    assert calls["launch"] == (built.name, {"port": 5252, "address": "0.0.0.0", "remote": True, "auto": False})
    assert calls["wait"] < 0 and calls["closed"]
    out = console.export_text()
    assert f"http://127.0.0.1:5252/datasets/{dataset.slug}" in out and "low_confidence" in out
    assert f"i2icurate sync {run}" in out
    assert len(review(run, launch=False, console=QUIET)) == len(built)


def test_tag_parsing_and_priority():
    from i2icurate.curation.sync import label_from_tags

    assert label_from_tags(["cluster:7"]) == ("cluster_7", None)
    assert label_from_tags(["Cluster_7", "reviewed"]) == ("cluster_7", None)
    assert label_from_tags(["new cluster"]) == ("new_cluster", None)
    assert label_from_tags([]) == (None, None)
    label, note = label_from_tags(["cluster:1", "new_cluster"])
    assert label == "new_cluster" and "conflicting" in note
    label, note = label_from_tags(["new_cluster", "exclude", "cluster:3"])
    assert label == "exclude" and "kept exclude" in note
    label, note = label_from_tags(["cluster:1", "cluster:2"])
    assert label is None and "skipped" in note


def test_errors_are_one_line(fo, toy_discover_run, tmp_path, monkeypatch):
    from i2icurate.cli import main
    from i2icurate.commands.sync import sync
    from i2icurate.curation.dataset import build_dataset, dataset_name

    with pytest.raises(UserError, match="run folder not found"):
        sync(tmp_path / "missing", console=QUIET)
    with pytest.raises(SystemExit) as exc:
        main(["sync", str(tmp_path / "missing")])
    assert exc.value.code == 2

    run = _copy_run(toy_discover_run, tmp_path / "exp1")
    build_dataset(run, QUIET)
    fo.delete_dataset(dataset_name(run))
    with pytest.raises(UserError) as err:
        sync(run, console=QUIET)
    assert "no FiftyOne dataset for" in str(err.value) and "i2icurate review" in str(err.value)
    assert "\n" not in str(err.value)

    (run / "umap.npy").unlink()
    with pytest.raises(UserError, match="umap.npy"):
        build_dataset(run, QUIET)

    from i2icurate.curation.fo_env import import_fiftyone

    monkeypatch.setitem(sys.modules, "fiftyone", None)  # as if it were not installed
    with pytest.raises(UserError, match="FiftyOne is not installed"):
        import_fiftyone()


def test_database_that_cannot_start_is_one_line(run, tmp_path):
    env = {**os.environ, "FIFTYONE_DATABASE_URI": "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300",
           "FIFTYONE_DATABASE_NAME": "i2icurate-unreachable"}
    env.pop("FIFTYONE_PRIVATE_DATABASE_PORT", None)
    proc = subprocess.run([sys.executable, "-m", "i2icurate", "sync", str(run)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "FiftyOne's database could not start" in lines[0]
    assert "check FIFTYONE_DATABASE_URI" in lines[0]


def test_a_retrain_from_a_review_gets_a_moved_view(fo, toy_discover_run, tmp_path):
    from i2icurate.commands.discover import discover
    from i2icurate.curation.changes import CHANGES_CSV
    from i2icurate.curation.dataset import build_dataset
    from i2icurate.runs import read_csv, write_csv
    from tests.conftest import TOY_DISCOVER

    rows = read_csv(toy_discover_run / "assignments.csv")
    first = int(rows[0]["cluster"])
    other = next(int(r["cluster"]) for r in rows if int(r["cluster"]) != first)
    labels = [(r["path"], f"cluster_{other}", "human", "2026-11-29T11:00:00") for r in rows[:5]]
    write_csv(tmp_path / "labels.csv", ["path", "label", "source", "time"], labels)
    retrained = discover(read_json_source(toy_discover_run), labels=str(tmp_path / "labels.csv"),
                         from_run=str(toy_discover_run), iters=4, project=str(tmp_path / "runs"), console=QUIET,
                         **{k: v for k, v in TOY_DISCOVER.items() if k != "preset"})
    moved = read_csv(retrained / CHANGES_CSV)
    dataset = build_dataset(retrained, QUIET)
    assert "moved" in dataset.list_saved_views()
    assert dataset.load_saved_view("moved").count() == len(moved)
    assert sorted(dataset.load_saved_view("moved").values("i2i_path")) == sorted(r["path"] for r in moved)


def read_json_source(run: Path) -> Path:
    return Path(json.loads((run / "config.json").read_text())["source"])
