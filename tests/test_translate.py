"""`i2icurate translate`: domain selection from a discover run, outputs per input, and one-line errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console

import i2icurate.commands.translate as translate_module
from i2icurate.commands.translate import translate
from i2icurate.data.domains import effective_clusters
from i2icurate.data.imageio import decode_to_array
from i2icurate.runs import read_csv, write_csv
from tests.test_discover_cli import folder_digest


def _two_clusters(run: Path) -> tuple[int, int, int]:
    counts = Counter(int(r["cluster"]) for r in read_csv(run / "assignments.csv"))
    (a, n_a), (b, _) = counts.most_common(2)
    return a, b, n_a


def test_tunit_translates_every_domain_a_image(toy_discover_run, animal_folder, tmp_path, monkeypatch):
    before = folder_digest(animal_folder)
    a, b, n_a = _two_clusters(toy_discover_run)
    drawn = []
    real_grid = translate_module.translation_grid
    monkeypatch.setattr(translate_module, "translation_grid", lambda *args: drawn.append(args) or real_grid(*args))
    run = translate(a, b, run=toy_discover_run, model="tunit", project=str(tmp_path / "runs"),
                    console=Console(quiet=True))
    outputs = sorted(p.relative_to(run / "outputs").as_posix() for p in (run / "outputs").rglob("*.png"))
    paths, clusters = effective_clusters(toy_discover_run)
    expected = sorted(p for p, c in zip(paths, clusters, strict=True) if c == a)
    assert len(outputs) == n_a and outputs == expected
    img = Image.open(run / "outputs" / expected[0])
    assert img.size == (32, 32) and img.mode == "RGB"
    assert (run / "grid.png").is_file() and (run / "config.json").is_file()
    assert folder_digest(animal_folder) == before
    # the grid shows images spread over the whole cluster, first and last included, beside their written outputs
    (sources, columns, _, _), = drawn
    rows = translate_module.grid_rows(n_a)
    assert rows[0] == 0 and rows[-1] == n_a - 1 and len(rows) == min(translate_module.GRID_ROWS, n_a)
    cached = np.stack([np.asarray(Image.open(run / "outputs" / expected[i])) for i in rows])
    assert np.array_equal(columns[:, 0], cached)
    assert np.array_equal(sources, np.stack([decode_to_array(animal_folder / expected[i], 32, 10**9) for i in rows]))


def test_translate_an_input_folder_keeps_relative_paths(toy_discover_run, animal_folder, tmp_path):
    inputs = tmp_path / "inputs"
    for src in sorted(animal_folder.rglob("*.png"))[::40]:
        target = inputs / "nested" / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target)
    a, b, _ = _two_clusters(toy_discover_run)
    run = translate(a, b, run=toy_discover_run, input_dir=inputs, out=tmp_path / "out", project=str(tmp_path / "r"),
                    console=Console(quiet=True))
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert written == sorted(f"nested/{p.name}" for p in (inputs / "nested").iterdir())
    assert not any((run / "outputs").glob("*"))  # --out was used instead


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "i2icurate", "translate", *args], capture_output=True, text=True,
                          timeout=300)


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_bad_clusters_are_one_line_errors(toy_discover_run, tmp_path):
    a, b, _ = _two_clusters(toy_discover_run)
    run, project = str(toy_discover_run), str(tmp_path / "runs")
    assert "cluster 99 does not exist" in _one_line_error(_cli("--from", "99", "--to", str(b), "--run", run,
                                                               "--project", project))
    assert "not a cluster id" in _one_line_error(_cli("--from", "cats", "--to", str(b), "--run", run))
    assert "same cluster" in _one_line_error(_cli("--from", str(a), "--to", str(a), "--run", run))
    message = _one_line_error(_cli("--from", str(a), "--to", str(b), "--run", run, "--min-confidence", "1.0"))
    assert "has no images with confidence >= 1.0" in message
    assert not (tmp_path / "runs" / "translate").exists() or not any((tmp_path / "runs" / "translate").iterdir())


def test_human_labels_win_and_can_empty_a_cluster(toy_discover_run, tmp_path):
    run = tmp_path / "run_copy"
    shutil.copytree(toy_discover_run, run, ignore=shutil.ignore_patterns("cache", "tb"))
    a, b, _ = _two_clusters(run)
    rows = read_csv(run / "assignments.csv")
    members = [r["path"] for r in rows if int(r["cluster"]) == a]
    moved = [r["path"] for r in rows if int(r["cluster"]) == b][0]
    write_csv(run / "labels.csv", ["path", "label", "source", "time"],
              [(p, "exclude", "human", "t") for p in members] + [(moved, f"cluster_{a}", "human", "t")])
    paths, clusters = effective_clusters(run)
    assert clusters[paths.index(moved)] == a and int(np.sum(clusters == a)) == 1
    write_csv(run / "labels.csv", ["path", "label", "source", "time"], [(p, "exclude", "human", "t") for p in members])
    assert "has no images" in _one_line_error(_cli("--from", str(a), "--to", str(b), "--run", str(run)))


def test_out_inside_the_image_folder_is_refused(toy_discover_run, animal_folder, tmp_path):
    a, b, _ = _two_clusters(toy_discover_run)
    message = _one_line_error(_cli("--from", str(a), "--to", str(b), "--run", str(toy_discover_run),
                                   "--out", str(animal_folder / "translated"), "--project", str(tmp_path / "r")))
    assert "inside the input folder" in message
    assert not (animal_folder / "translated").exists()
    assert not (tmp_path / "r" / "translate").exists()  # refused before any run folder was made


def test_trained_models_run_through_the_command_and_resume(toy_discover_run, tmp_path):
    import json

    import pytest
    import torch

    a, b, n_a = _two_clusters(toy_discover_run)
    for model in ("ugatit", "srunit"):
        run = translate(a, b, run=toy_discover_run, model=model, preset="tiny", iters=4, batch_size=2, log_every=1,
                        ckpt_every=2, sample_every=2, project=str(tmp_path / model), console=Console(quiet=True))
        state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
        assert state["step"] == 4
        assert len(list((run / "outputs").rglob("*.png"))) == n_a
        stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
        assert [s["step"] for s in stats] == [1, 2, 3, 4]
        assert all(np.isfinite(v) for s in stats for v in s.values())
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["model"] == model and cfg["img_size"] == 32 and cfg["from"] == a and cfg["to"] == b
    with pytest.raises(Exception, match="is an option of srunit, not ugatit"):
        translate(a, b, run=toy_discover_run, model="ugatit", preset="tiny", reg=0.1, project=str(tmp_path / "x"))


def test_eval_prints_fid_and_kid(toy_discover_run, tmp_path):
    import json

    a, b, _ = _two_clusters(toy_discover_run)
    run = translate(a, b, run=toy_discover_run, model="tunit", evaluate=True, project=str(tmp_path / "runs"),
                    console=Console(quiet=True))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["fid"] > 0 and np.isfinite(metrics["kid"]) and metrics["n_b"] > 0
    plain = translate(a, b, run=toy_discover_run, model="tunit", project=str(tmp_path / "plain"),
                      console=Console(quiet=True))
    # --eval adds a column of real target-domain images beside source | translation
    with Image.open(run / "grid.png") as with_targets, Image.open(plain / "grid.png") as without:
        assert with_targets.height == without.height and with_targets.width > without.width
