"""`i2icurate discover` end to end through the CLI on real images: outputs, untouched source, exact resume."""

from __future__ import annotations

import hashlib
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from i2icurate.cli import main
from tests.cli_helpers import ctrl_c_after_step

# Toy size: the tiny networks, a handful of iterations, with the GAN phase starting half-way.
TOY = ["--preset", "tiny", "--batch-size", "16", "--warmup-frac", "0.5", "--ema-g-delay", "0.1", "--workers", "1",
       "--log-every", "2", "--sample-every", "4", "--ckpt-every", "5", "--ema-beta", "0.9"]
OUTPUTS = ["config.json", "images.csv", "skipped.csv", "last.pt", "stats.jsonl", "assignments.csv", "embeddings.npy",
           "probabilities.npy", "prototypes.npy", "embeddings.faiss", "umap.npy", "umap.png", "translation_grid.png",
           "summary.json"]


def folder_digest(root: Path) -> dict[str, str]:
    """sha1 of every file under root, by relative path (also catches added or removed files)."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "i2icurate", *args], capture_output=True, text=True, timeout=600)


def test_discover_writes_every_output_and_leaves_the_source_alone(animal_folder, tmp_path):
    before = folder_digest(animal_folder)
    project = tmp_path / "runs"
    main(["discover", str(animal_folder), *TOY, "--iters", "12", "--project", str(project), "--eval-labels", "folders"])
    run = project / "discover" / "exp1"
    for name in OUTPUTS:
        assert (run / name).is_file(), name
    assert folder_digest(animal_folder) == before

    images = (run / "images.csv").read_text().splitlines()
    assignments = (run / "assignments.csv").read_text().splitlines()
    assert len(assignments) == len(images) == 201  # header + 200 real images
    k = json.loads((run / "config.json").read_text())["k"]
    assert len(list((run / "clusters").glob("cluster_*.png"))) == k
    assert np.load(run / "embeddings.npy").shape == (200, 32)
    assert np.load(run / "probabilities.npy").sum(axis=1) == pytest.approx(np.ones(200), abs=1e-4)
    assert list((run / "tb").glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["scores"]) == {"acc", "nmi", "ari"} and 0 <= summary["scores"]["acc"] <= 1

    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [2, 4, 6, 8, 10, 12]
    assert all(math.isfinite(v) for s in stats for v in s.values())
    assert "loss/d_adv" in stats[-1] and "loss/g_style" in stats[-1]  # the GAN phase ran


def _weights(run: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    flat = {f"{m}.{k}": v for m, sd in state["models"].items() for k, v in sd.items()}
    flat.update({f"queue.{k}": v for k, v in state["queue"].items() if torch.is_tensor(v)})
    return {"step": state["step"], **flat}


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa["step"] == wb["step"]
    assert wa.keys() == wb.keys()
    for key in wa:
        if torch.is_tensor(wa[key]):
            assert torch.equal(wa[key], wb[key]), key


def test_ctrl_c_saves_and_resume_matches_an_uninterrupted_run(animal_folder, tmp_path, monkeypatch):
    project = tmp_path / "runs"
    args = ["discover", str(animal_folder), *TOY, "--iters", "14", "--project", str(project)]
    main([*args, "--name", "straight"])

    ctrl_c_after_step(monkeypatch, 7)  # the GAN phase has started; Ctrl-C arrives mid-run
    with pytest.raises(SystemExit) as stop:
        main([*args, "--name", "cut"])
    assert stop.value.code == 130
    cut = project / "discover" / "cut1"
    assert _weights(cut)["step"] == 8 and not (cut / "assignments.csv").exists()

    monkeypatch.undo()
    main(["discover", "--resume", str(cut)])
    _assert_same_weights(project / "discover" / "straight1", cut)
    steps = [json.loads(line)["step"] for line in (cut / "stats.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no duplicated log lines after the resume
    assert (cut / "assignments.csv").is_file()


def test_kill_then_resume_reaches_identical_weights(animal_folder, tmp_path):
    project = tmp_path / "runs"
    args = ["discover", str(animal_folder), *TOY, "--iters", "30", "--project", str(project)]
    done = run_cli(*args, "--name", "straight")
    assert done.returncode == 0, done.stderr

    proc = subprocess.Popen([sys.executable, "-m", "i2icurate", *args, "--name", "killed"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = project / "discover" / "killed1"
    deadline = time.time() + 300
    while not (killed / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _weights(killed)["step"] < 30  # it really died part-way

    resumed = run_cli("discover", "--resume", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from iteration" in resumed.stdout
    _assert_same_weights(project / "discover" / "straight1", killed)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing", "error: image folder not found"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "error: no images found"),
    ],
)
def test_bad_folders_give_one_line_errors(tmp_path, make, message):
    result = run_cli("discover", str(make(tmp_path)), "--project", str(tmp_path / "runs"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_run_folder_inside_the_image_folder_is_refused(animal_folder):
    before = folder_digest(animal_folder)
    result = run_cli("discover", str(animal_folder), "--project", str(animal_folder / "runs"))
    assert result.returncode == 2 and "inside the image folder" in result.stderr
    assert folder_digest(animal_folder) == before


def test_unknown_run_and_bad_option_values(tmp_path):
    result = run_cli("discover", "--resume", str(tmp_path / "nope"))
    assert result.returncode == 2 and "run folder not found" in result.stderr
    result = run_cli("discover", str(tmp_path), "--img-size", "999")
    assert result.returncode == 2 and "999" in result.stderr and "Traceback" not in result.stderr
