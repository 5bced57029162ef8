"""discover -k auto: the sweep on a small real folder, the range clipped to the folder, and resume / --from reuse."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
from rich.console import Console

from i2icurate.commands.auto_k import (
    K_CURVE_PNG,
    K_SWEEP_CSV,
    k_candidates,
    labelled_clusters,
    range_end_hint,
    sweep_k,
)
from i2icurate.commands.discover import discover
from i2icurate.config import SCRATCH_K, resolve
from i2icurate.engines.features import cached_features
from i2icurate.engines.heads import HeadPhase
from i2icurate.engines.tunit import build_guiding
from i2icurate.errors import UserError
from i2icurate.metrics.k_choice import RULE, SWEEP_RULE, KChoice, choose_k, refine, sweep
from i2icurate.runs import read_csv, write_csv
from tests.cli_helpers import TOY, cli, copy_images, ctrl_c_after_step, run_folders
from tests.conftest import TOY_KW

QUIET = Console(quiet=True)
# the default (pretrained trunk) discover at toy size, as CLI flags
TOY_PRE = ["--iters", "16", "--warmup-frac", "0.5", "--head-batch", "64", "--batch-size", "8", "--backbone-size", "32",
           "--workers", "1", "--log-every", "2", "--ckpt-every", "5", "--sample-every", "8", "--threads", "1"]


def test_the_sweep_on_a_real_folder_records_the_choice(pretrained_run, tmp_path):
    """The 200 real animal silhouettes of the shared default run: its cached trunk features, the descriptor the heads
    read, every K of the range scored, the rule's choice written to k_sweep.csv, k_curve.png and config.json."""
    cfg = {**json.loads((pretrained_run / "config.json").read_text()), "k_range": "2:14"}
    paths = [r["path"] for r in read_csv(pretrained_run / "images.csv")]
    guiding = build_guiding({**cfg, "k": 2})
    phase = HeadPhase(guiding, *cached_features(pretrained_run, len(paths)), cfg, torch.device("cpu"))
    phase.fit_descriptor()
    desc = phase.descriptors(0).numpy()
    run = tmp_path / "exp1"  # a copy of what the sweep reads and writes: the shared run stays as it is
    run.mkdir()
    shutil.copy(pretrained_run / "config.json", run / "config.json")
    console = Console(record=True, width=300, file=io.StringIO())
    out = sweep_k(run, cfg, desc, paths, console)
    rows = read_csv(run / K_SWEEP_CSV)
    assert [int(r["k"]) for r in rows] == list(range(2, 15))
    excess = [float(r["stability_excess"]) for r in rows]
    for row, e in zip(rows, excess, strict=True):
        assert float(row["stability"]) - float(row["stability_null"]) == pytest.approx(e)
    assert max(excess) > 0.1  # ten animal classes: real structure beats the cluster-free reference
    # the heads were trained for the k-means choice and its neighbours only, and the rule read their excess
    swept = int(rows[int(np.argmax(excess))]["k"])
    refined = [int(r["k"]) for r in rows if r["head_agreement_excess"] != "nan"]
    assert refined == [k for k in range(2, 15) if abs(k - swept) <= 1]
    heads = {int(r["k"]): float(r["head_agreement_excess"]) for r in rows if int(r["k"]) in refined}
    for row in rows:
        if int(row["k"]) in refined:
            assert float(row["head_agreement"]) - float(row["head_agreement_null"]) == pytest.approx(
                heads[int(row["k"])])
    assert out["k"] == max(heads, key=heads.get)  # the documented rule, read back from the CSV
    assert max(heads.values()) > 0.1  # the heads agree on real structure more than on the reference
    saved = json.loads((run / "config.json").read_text())
    record = saved["k_auto"]
    assert saved["k"] == out["k"] == record["k"] and record["refined"] == refined
    assert record["runner_up"] in refined and record["runner_up"] != out["k"]
    assert record["tried"] == [2, 14] and record["rule"] == RULE and record["sample"] == 200
    assert (run / K_CURVE_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"-k auto: K={out['k']}, runner-up K={record['runner_up']}" in console.export_text()
    assert record["at_range_end"] == (out["k"] == 14)
    assert ("the largest K tried" in console.export_text()) == (out["k"] == 14)


def test_a_choice_at_the_top_of_the_asked_range_says_to_widen_it():
    """Chosen at the top of the user's range: the hint names a wider range. Not when the folder size clipped the range
    (no wider range exists) or when K lies inside it."""
    assert "--k-range 2:60" in range_end_hint(30, list(range(2, 31)), asked_high=30)
    assert range_end_hint(12, list(range(2, 13)), asked_high=30) is None  # clipped to half of 24 images
    assert range_end_hint(11, list(range(2, 31)), asked_high=30) is None
    assert range_end_hint(2, [2], asked_high=2) is None


def test_the_range_is_clipped_to_the_folder_and_the_labels():
    assert k_candidates("2:30", 1000) == list(range(2, 31))
    assert k_candidates("2:30", 12) == list(range(2, 7))  # at most half the images
    assert k_candidates("8:30", 12) == [6]
    assert k_candidates("2:30", 3) == [2]
    assert k_candidates("2:5", 1000, at_least=7) == [7]  # the labels win over MAX
    assert k_candidates("2:30", 1000, at_least=7) == list(range(7, 31))
    with pytest.raises(UserError, match="labels name 20 clusters"):
        k_candidates("2:30", 12, at_least=20)


def test_a_sweep_over_three_real_images_still_chooses():
    from i2icurate.data.demo import load_animal_mnist

    pixels = load_animal_mnist()[0][:3].reshape(3, -1).astype(np.float64)
    rows = sweep(pixels / np.linalg.norm(pixels, axis=1, keepdims=True), [2], seed=0)
    assert [r["k"] for r in rows] == [2] and choose_k(rows) == KChoice(2, None, SWEEP_RULE)


def test_the_heads_decide_among_the_refined_ks_and_the_sweep_alone_elsewhere():
    """choose_k reads the head-agreement excess where the heads were trained, the k-means excess where not."""
    rows = [{"k": k, "stability_excess": e} for k, e in ((4, 0.50), (10, 0.44), (11, 0.54), (12, 0.50))]
    assert choose_k(rows) == KChoice(11, 4, SWEEP_RULE)  # ties go to the smaller K
    seen = []
    refined = refine(rows, np.eye(4)[np.arange(40) % 4], lambda x, k: seen.append(k) or (0.9 if k == 10 else 0.5))
    assert sorted(set(seen)) == [10, 11, 12] and len(seen) == 6  # data and reference for each refined K
    assert np.isnan(refined[0]["head_agreement_excess"]) and refined[1]["head_agreement_excess"] == 0.0
    assert choose_k([{**r, "head_agreement_excess": e} for r, e in zip(rows, (np.nan, 0.61, 0.48, 0.42),
                                                                       strict=True)]) == KChoice(10, 11, RULE)


def test_labelled_clusters_are_a_lower_bound(tmp_path):
    write_csv(tmp_path / "labels.csv", ["path", "label", "source", "time"],
              [("a.png", "cluster_4", "human", "t"), ("b.png", "exclude", "human", "t"),
               ("c.png", "new_cluster", "human", "t"), ("gone.png", "cluster_9", "human", "t")])
    assert labelled_clusters(tmp_path, ["a.png", "b.png", "c.png"]) == 5
    assert labelled_clusters(tmp_path / "none", ["a.png"]) == 0


def test_k_option_takes_a_number_or_auto(capsys):
    assert resolve("discover")["k"] == "auto" and resolve("discover", k="7")["k"] == 7  # auto is the default
    assert resolve("discover", k_range="3:9")["k_range"] == "3:9"
    with pytest.raises(UserError, match="--k: 1 is below the minimum 2"):
        resolve("discover", k=1)
    with pytest.raises(UserError, match="--k-range: expected MIN:MAX"):
        resolve("discover", k_range="2-30")
    code, _, err = cli(capsys, "discover", "somewhere", "--k-range", "9:3")
    assert code == 2 and "2 <= MIN <= MAX" in err


def test_k_auto_on_a_from_scratch_trunk_is_a_one_line_error(animal_folder, tmp_path, capsys):
    code, _, err = cli(capsys, "discover", str(animal_folder), "-k", "auto", *TOY, "--project", str(tmp_path))
    assert code == 2 and "-k auto chooses K on a pretrained trunk" in err and len(err.strip().splitlines()) == 1
    assert run_folders(tmp_path) == []


def test_without_k_a_from_scratch_trunk_trains_with_ten_clusters(animal_folder, tmp_path, capsys):
    """-k auto is only the default: a from-scratch trunk has no features to choose K from, so it takes SCRATCH_K."""
    folder = copy_images(animal_folder, tmp_path / "twelve", 12)
    code, out, _ = cli(capsys, "discover", str(folder), *TOY, "--iters", "2", "--project", str(tmp_path / "runs"))
    assert code == 0 and "-k auto" not in out and f"K={SCRATCH_K}" in out
    (run,) = run_folders(tmp_path / "runs")
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["k"] == SCRATCH_K and "k_auto" not in cfg and not (run / K_SWEEP_CSV).exists()


def test_resume_and_from_reuse_the_chosen_k(animal_folder, tmp_path, capsys, monkeypatch):
    folder = copy_images(animal_folder, tmp_path / "twelve", 12)
    project = tmp_path / "runs"
    ctrl_c_after_step(monkeypatch, 3)
    code, out, _ = cli(capsys, "discover", str(folder), *TOY_PRE, "--project", str(project))  # no -k: auto
    assert code == 130 and "-k auto: K=" in out
    assert "choosing K" in out.split("-k auto: K=")[0]  # the plan line, before the sweep, counts its time
    monkeypatch.undo()
    (run,) = run_folders(project)
    assert [int(r["k"]) for r in read_csv(run / K_SWEEP_CSV)] == [2, 3, 4, 5, 6]  # clipped: 12 images
    chosen = json.loads((run / "config.json").read_text())["k"]
    swept = (run / K_SWEEP_CSV).stat().st_mtime_ns
    code, out, _ = cli(capsys, "discover", "--resume", str(run))
    assert code == 0 and "-k auto: K=" not in out.split("resuming")[0]  # no new sweep before training
    assert f"TUNIT: K={chosen}" in out and (run / K_SWEEP_CSV).stat().st_mtime_ns == swept
    assert json.loads((run / "summary.json").read_text())["k_auto"]["k"] == chosen
    child = discover(folder, from_run=str(run), project=str(project), console=QUIET,
                     **{**TOY_KW, "batch_size": 8, "iters": 4, "warmup_frac": 1.0})
    assert json.loads((child / "config.json").read_text())["k"] == chosen and not (child / K_SWEEP_CSV).exists()
