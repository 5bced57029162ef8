"""Distributed training on the CPU: two processes on the gloo backend, as `torchrun` would start them."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from i2icurate.config import resolve
from i2icurate.data.cache import build_cache, load_cache
from i2icurate.data.scan import scan_folder
from i2icurate.engines.checkpoint import load_checkpoint
from i2icurate.models.tunit.losses import iic_loss
from i2icurate.runs import read_csv
from tests.conftest import TOY_DISCOVER

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)


def _iic_worker(rank: int, port: int, out: str) -> None:
    """Each rank: IIC on its half of a fixed batch with the joint summed over ranks; gradients averaged as DDP does."""
    from i2icurate.engines.distributed import all_reduce_sum, init_distributed, shutdown

    _join(rank, port)
    dist, _ = init_distributed("cpu")
    gen = torch.Generator().manual_seed(0)
    x, x_aug = torch.randn(16, 8, generator=gen), torch.randn(16, 8, generator=gen)
    weight = torch.randn(8, 5, generator=gen).requires_grad_(True)
    half = slice(rank * 8, rank * 8 + 8)
    loss = iic_loss(x[half] @ weight, x_aug[half] @ weight, joint_reduce=lambda j: all_reduce_sum(dist, j))
    loss.backward()
    torch.distributed.all_reduce(weight.grad)
    weight.grad /= WORLD
    if rank == 0:
        Path(out).write_text(json.dumps({"loss": loss.item(), "grad": weight.grad.flatten().tolist()}))
    shutdown(dist)


def test_iic_gathered_over_ranks_equals_the_whole_batch(tmp_path):
    out = tmp_path / "iic.json"
    mp.spawn(_iic_worker, args=(_free_port(), str(out)), nprocs=WORLD)
    got = json.loads(out.read_text())

    gen = torch.Generator().manual_seed(0)
    x, x_aug = torch.randn(16, 8, generator=gen), torch.randn(16, 8, generator=gen)
    weight = torch.randn(8, 5, generator=gen).requires_grad_(True)
    loss = iic_loss(x @ weight, x_aug @ weight)
    loss.backward()
    assert got["loss"] == pytest.approx(loss.item(), rel=1e-5)
    np.testing.assert_allclose(got["grad"], weight.grad.flatten().numpy(), rtol=1e-4, atol=1e-7)


def _trainer_worker(rank: int, port: int, cache_dir: str, out: str) -> None:
    """Each rank trains the same toy TUNIT through the GAN phase, then reports checksums of everything shared."""
    from i2icurate.engines.distributed import gather_objects, init_distributed, shutdown
    from i2icurate.engines.tunit import TunitTrainer

    _join(rank, port)
    dist, device = init_distributed("cpu")
    toy = {k: v for k, v in TOY_DISCOVER.items() if k != "preset"}
    cfg = resolve("discover", TOY_DISCOVER["preset"], **{**toy, "iters": 8, "device": "cpu"})
    trainer = TunitTrainer(cfg, load_cache(Path(cache_dir), 32), dist=dist, device=torch.device(device))
    losses = []
    for i in range(cfg["iters"]):
        losses.append(trainer.step(i))
        trainer.step_count = i + 1
    idx, _ = trainer.batches.next()
    state = trainer.state_dict()
    sums = {name: [float(p.double().sum()) for p in getattr(trainer, name).parameters()]
            for name in ("E", "G", "D", "E_ema", "G_ema")}
    report = {"sums": sums, "queue": float(trainer.queue.negatives().double().sum()), "next_idx": idx.tolist(),
              "ranks_in_state": len(state["ranks"]), "losses": losses}
    everyone = gather_objects(dist, report)
    if rank == 0:
        Path(out).write_text(json.dumps(everyone))
    shutdown(dist)


@pytest.fixture(scope="module")
def cache_dir(animal_folder, tmp_path_factory) -> Path:
    """The 200 real animal images decoded at 32 px, as discover caches them."""
    cache = tmp_path_factory.mktemp("ddp") / "cache"
    build_cache(animal_folder, scan_folder(animal_folder).files, 32, cache, workers=1, max_pixels=10**8)
    return cache


def _spawn(worker, cache: Path, out: Path) -> list[dict]:
    """Run `worker(rank, port, cache, out)` on WORLD processes; rank 0 writes every rank's report to `out`."""
    mp.spawn(worker, args=(_free_port(), str(cache), str(out)), nprocs=WORLD)
    return json.loads(out.read_text())


def test_ranks_stay_in_sync_and_see_disjoint_shards(cache_dir, tmp_path):
    r0, r1 = _spawn(_trainer_worker, cache_dir, tmp_path / "ranks.json")

    # DDP keeps every network (and so the EMA copies) identical; the queue holds both ranks' keys in the same order
    for name in r0["sums"]:
        np.testing.assert_allclose(r0["sums"][name], r1["sums"][name], rtol=1e-6, atol=1e-6, err_msg=name)
    assert r0["queue"] == pytest.approx(r1["queue"], rel=1e-6)
    # the global batch of 16 is split: 8 images each, never the same ones
    assert len(r0["next_idx"]) == len(r1["next_idx"]) == 8
    assert not set(r0["next_idx"]) & set(r1["next_idx"])
    assert r0["ranks_in_state"] == WORLD
    # the GAN phase ran (warm-up is half of 8 iterations) with finite losses on both ranks
    for report in (r0, r1):
        assert "loss/d_adv" in report["losses"][-1]
        assert all(np.isfinite(v) for step in report["losses"] for v in step.values())


def test_torchrun_discover_end_to_end(animal_folder, tmp_path):
    project = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "i2icurate", "discover", str(animal_folder), "--preset", "tiny", "--iters", "10",
           "--warmup-frac", "0.5", "--batch-size", "16", "--log-every", "2", "--ckpt-every", "5", "--workers", "1",
           "--device", "cpu", "--project", str(project), "--name", "ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = list((project / "discover").iterdir())
    assert [r.name for r in runs] == ["ddp1"]  # one run folder, made by rank 0 only
    run = runs[0]
    assert len(read_csv(run / "assignments.csv")) == 200
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10]  # logged once, by rank 0
    state = load_checkpoint(run / "last.pt")
    assert state["step"] == 10 and len(state["ranks"]) == WORLD
    assert proc.stdout.count("run folder:") == 1


def test_batch_that_does_not_divide_over_the_ranks_is_a_one_line_error(animal_folder, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "i2icurate", "discover", str(animal_folder), "--preset", "tiny", "--iters", "4",
           "--batch-size", "15", "--workers", "1", "--device", "cpu", "--project", str(tmp_path / "runs")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.count("error: --batch-size 15 is the global batch and must divide over the 2 processes") == 1
    assert not re.search(r'File ".*i2icurate/', proc.stderr)  # torchrun reports the failure; our code no traceback
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made


def _translator_worker(rank: int, port: int, cache_dir: str, out: str) -> None:
    """Each rank trains U-GAT-IT and SRUNIT (tiny) for a few steps, then reports parameter checksums."""
    from i2icurate.commands.translate import resolve_translate
    from i2icurate.engines.distributed import gather_objects, init_distributed, shutdown
    from i2icurate.translators import base

    _join(rank, port)
    dist, device = init_distributed("cpu")
    images = load_cache(Path(cache_dir), 32)
    report = {}
    for model in ("ugatit", "srunit"):
        cfg = resolve_translate(model, "tiny", {"batch_size": 4, "iters": 8, "device": "cpu"})
        translator = base.load(model).Translator(cfg, images[:100], images[100:], torch.device(device), dist=dist)
        losses = [translator.step(i) for i in range(3)]
        nets = {n: m for n, m in vars(translator).items() if isinstance(m, torch.nn.Module)}
        report[model] = {"sums": {n: float(sum(p.double().sum() for p in m.parameters())) for n, m in nets.items()},
                         "finite": all(np.isfinite(v) for step in losses for v in step.values()),
                         "next_a": translator.batches_a.next()[0].tolist() if model == "srunit" else
                         translator.sources["a"].next()[0].tolist()}
    everyone = gather_objects(dist, report)
    if rank == 0:
        Path(out).write_text(json.dumps(everyone))
    shutdown(dist)


def test_translators_average_gradients_across_ranks(cache_dir, tmp_path):
    r0, r1 = _spawn(_translator_worker, cache_dir, tmp_path / "translators.json")
    for model in ("ugatit", "srunit"):
        assert r0[model]["sums"].keys() == r1[model]["sums"].keys() and len(r0[model]["sums"]) >= 2
        for name, value in r0[model]["sums"].items():
            assert r1[model]["sums"][name] == pytest.approx(value, rel=1e-6, abs=1e-6), (model, name)
        assert r0[model]["finite"] and r1[model]["finite"]
        assert len(r0[model]["next_a"]) == 2 and not set(r0[model]["next_a"]) & set(r1[model]["next_a"])


def test_torchrun_translate_end_to_end(toy_discover_run, tmp_path):
    from collections import Counter

    counts = Counter(int(r["cluster"]) for r in read_csv(toy_discover_run / "assignments.csv"))
    (a, n_a), (b, _) = counts.most_common(2)
    project = tmp_path / "runs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "i2icurate", "translate", "--discover-run", str(toy_discover_run), "--from", str(a), "--to", str(b),
           "--model", "srunit", "--preset", "tiny", "--iters", "3", "--batch-size", "2", "--log-every", "1",
           "--workers", "1", "--device", "cpu", "--project", str(project)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = list((project / "translate").iterdir())
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert len(list((run / "outputs").rglob("*.png"))) == n_a  # written once, by rank 0
    assert proc.stdout.count("run folder:") == 1


def test_ctrl_c_under_torchrun_saves_once_and_resumes(animal_folder, tmp_path):
    import signal
    import time

    project = tmp_path / "runs"
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD),
              "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), "-m", "i2icurate", "discover"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*launch, str(animal_folder), "--preset", "tiny", "--iters", "150", "--batch-size", "16",
                             "--log-every", "5", "--ckpt-every", "1000", "--workers", "1", "--device", "cpu",
                             "--project", str(project), "--name", "stop"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    stats = project / "discover" / "stop1" / "stats.jsonl"
    deadline = time.monotonic() + 300
    while not (stats.exists() and stats.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the launcher and both workers get it
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert output.count("checkpoint saved") == 1, output[-3000:]
    run = stats.parent
    stopped = load_checkpoint(run / "last.pt")["step"]
    assert 0 < stopped < 150

    done = subprocess.run([*launch, "--resume", str(run)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resuming from iteration {stopped}" in done.stdout
    assert load_checkpoint(run / "last.pt")["step"] == 150
    assert len(read_csv(run / "assignments.csv")) == 200
