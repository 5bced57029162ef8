"""discover on the default pretrained trunk: the plan, every cluster in use, exact resume, and what consumes it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console

from i2icurate.cli import main
from i2icurate.commands.discover import discover
from i2icurate.commands.translate import translate
from i2icurate.data.cache import load_cache
from i2icurate.data.demo import ANIMAL_CLASSES
from i2icurate.engines.checkpoint import load_checkpoint
from i2icurate.engines.features import CONTENT_NPY, STYLE_NPY, cached_features
from i2icurate.engines.tunit import TunitTrainer, build_guiding
from i2icurate.runs import read_csv, write_csv
from tests.cli_helpers import ctrl_c_after_step
from tests.conftest import TOY_KW
from tests.test_discover_cli import _assert_same_weights, _weights

# The default plan, made toy-sized: the trunk reads 32 px, 8 head updates then 8 generator iterations.
TOY = ["--iters", "16", "--warmup-frac", "0.5", "--head-batch", "64", "--batch-size", "16", "--backbone-size", "32",
       "--workers", "1", "--log-every", "2", "--ckpt-every", "5", "--sample-every", "8"]
QUIET = Console(quiet=True)


def test_default_discover_prints_its_plan_and_fills_every_cluster(animal_folder, tmp_path, capsys):
    main(["discover", str(animal_folder), "-k", "10", *TOY, "--project", str(tmp_path / "runs"), "--eval-labels",
          "folders"])
    out = capsys.readouterr().out
    assert "plan: 200 images, efficientnet-lite0 trunk at 32 px" in out and "choosing K" not in out  # K was given
    assert out.index("plan:") < out.index("TUNIT:")  # printed before training starts
    run = tmp_path / "runs" / "discover" / "exp1"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["backbone"] == "efficientnet-lite0" and cfg["preset"] is None
    summary = json.loads((run / "summary.json").read_text())
    assert summary["clusters_used"] == cfg["k"] == 10 and summary["backbone"] == "efficientnet-lite0"
    assert "warning: only" not in out
    assert np.load(run / CONTENT_NPY).shape == (2, 200, 1280)
    assert np.load(run / STYLE_NPY).shape[:2] == (2, 200)
    # the heads start from k-means on a trunk that knows images: far above chance on 10 classes after 16 steps
    assert summary["scores"]["acc"] > 0.35
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert "loss/scan_consistency" in stats[0] and "loss/d_adv" in stats[-1]


def test_ctrl_c_in_the_head_phase_then_resume_matches_a_straight_run(animal_folder, tmp_path, monkeypatch):
    project = tmp_path / "runs"
    args = ["discover", str(animal_folder), *TOY, "--warmup-frac", "1.0", "--project", str(project)]
    main([*args, "--name", "straight"])
    ctrl_c_after_step(monkeypatch, 3)
    with pytest.raises(SystemExit) as stop:
        main([*args, "--name", "cut"])
    assert stop.value.code == 130
    cut = project / "discover" / "cut1"
    assert _weights(cut)["step"] == 4
    monkeypatch.undo()
    main(["discover", "--resume", str(cut)])
    _assert_same_weights(project / "discover" / "straight1", cut)
    assert (cut / "assignments.csv").read_text() == (project / "discover" / "straight1" / "assignments.csv").read_text()


def _same_state(a: TunitTrainer, b: TunitTrainer) -> None:
    for name in ("E", "E_ema", "G", "G_ema", "D"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    assert torch.equal(a.queue.state_dict()["buffer"], b.queue.state_dict()["buffer"])


def test_a_checkpoint_restores_heads_and_generator_phase_exactly(pretrained_run):
    """Trainer level, across the switch from the heads to the generator: 4 steps, save, restore, 6 more steps."""
    cfg = json.loads((pretrained_run / "config.json").read_text())
    images = load_cache(pretrained_run / "cache", cfg["img_size"])
    features = cached_features(pretrained_run, len(images))
    straight, first = TunitTrainer(cfg, images), TunitTrainer(cfg, images)
    for t in (straight, first):
        t.attach_features(*features, fresh=True)
    for i in range(4):
        for t in (straight, first):
            t.step(i)
            t.step_count = i + 1
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = TunitTrainer(cfg, images)
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    resumed.attach_features(*features, fresh=False)
    for i in range(4, 10):  # the generator phase starts at 8
        straight.step(i)
        out = resumed.step(i)
    assert "loss/d_adv" in out
    _same_state(straight, resumed)


def test_tunit_translation_from_a_pretrained_run(pretrained_run, tmp_path):
    clusters = [int(r["cluster"]) for r in read_csv(pretrained_run / "assignments.csv")]
    a, b = np.bincount(clusters).argsort()[-2:]
    run = translate(int(a), int(b), run=pretrained_run, model="tunit", project=str(tmp_path / "runs"), console=QUIET)
    assert len(list((run / "outputs").rglob("*.png"))) == clusters.count(int(a))
    assert (run / "grid.png").is_file() and (pretrained_run / "translation_grid.png").is_file()


def test_labels_from_a_pretrained_run_supervise_its_heads(pretrained_run, animal_folder, tmp_path):
    paths = [r["path"] for r in read_csv(pretrained_run / "images.csv")]
    rows = [(p, f"cluster_{cls}", "human", "2026-11-29T10:00:00")
            for cls, name in enumerate(ANIMAL_CLASSES) for p in [q for q in paths if q.startswith(name + "/")][:3]]
    rows.append((paths[0], "exclude", "human", "2026-11-29T10:00:00"))
    write_csv(tmp_path / "labels.csv", ["path", "label", "source", "time"], rows)
    run = discover(animal_folder, labels=str(tmp_path / "labels.csv"), from_run=str(pretrained_run),
                   project=str(tmp_path / "runs"), console=QUIET, **{**TOY_KW, "iters": 8, "warmup_frac": 1.0})
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["backbone"] == "efficientnet-lite0" and cfg["backbone_size"] == 32
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all(np.isfinite(s["loss/sup_ce"]) for s in stats)
    assert stats[-1]["loss/sup_ce"] < stats[0]["loss/sup_ce"]  # the heads learn the reviewer's labels
    assert len(read_csv(run / "assignments.csv")) == 200


def test_export_assigns_what_the_heads_learned_on_the_cached_features(pretrained_run):
    """The exported clusters are the best head's on the cached trunk features: the cache keeps the trunk's float32
    outputs (float16 rounding once moved 8.5 % of MNIST images between training and export)."""
    cfg = json.loads((pretrained_run / "config.json").read_text())
    exported = np.array([int(row["cluster"]) for row in read_csv(pretrained_run / "assignments.csv")])
    content, style = cached_features(pretrained_run, len(exported))
    assert content.dtype == np.float32 and style.dtype == np.float32
    guiding = build_guiding(cfg)
    guiding.load_state_dict(load_checkpoint(pretrained_run / "last.pt")["models"]["E_ema"])
    with torch.no_grad():
        desc = guiding.describe(torch.from_numpy(np.array(content[0])), torch.from_numpy(np.array(style[0])))
        learned = guiding.heads[int(guiding.best)](desc).argmax(1).numpy()
    assert (learned == exported).mean() >= 0.99
