"""translate without --preset: a schedule that fits the device, printed before training; explicit flags win."""

from __future__ import annotations

import io
import json

import numpy as np
import torch
from PIL import Image
from rich.console import Console

import i2icurate.commands.translate as translate_module
import i2icurate.translate_plan as translate_plan_module
from i2icurate.commands.translate import resolve_translate, translate, typical_side
from i2icurate.runs import read_csv
from i2icurate.translate_plan import (
    CPU_BUDGET_S,
    LOOP_OVERHEAD,
    describe_translate_plan,
    thread_speedup,
    timed_schedule,
    translate_plan,
    wants_timing,
)
from i2icurate.translators import srunit, tunit, ugatit
from tests.test_translate import _two_clusters

CPU, GPU = torch.device("cpu"), torch.device("cuda")


def _native_bf16(monkeypatch, present: bool) -> None:
    monkeypatch.setattr(translate_plan_module, "cpu_has_native_bf16", lambda: present)


def test_cpu_plan_is_64px_small_networks_sized_to_the_budget(monkeypatch) -> None:
    _native_bf16(monkeypatch, False)
    for module in (ugatit, srunit):
        plan = translate_plan(module, CPU, threads=2)
        assert plan["img_size"] == 64 and "precision" not in plan
        assert {k: plan[k] for k in module.CPU_PLAN} == module.CPU_PLAN
        seconds = plan["iters"] * module.CPU_STEP_S / thread_speedup(2)
        assert abs(seconds - CPU_BUDGET_S) < 0.1 * CPU_BUDGET_S  # the iterations fill the time budget
    # fewer threads, fewer iterations in the same time; the slower model gets fewer than the faster one
    assert translate_plan(ugatit, CPU, threads=1)["iters"] < translate_plan(ugatit, CPU, threads=2)["iters"]
    assert translate_plan(ugatit, CPU, threads=2)["iters"] < translate_plan(srunit, CPU, threads=2)["iters"]
    # --minutes sizes the estimate too (what a run that times nothing, under torchrun, trains)
    assert translate_plan(srunit, CPU, threads=2, minutes=15)["iters"] == round(
        translate_plan(srunit, CPU, threads=2)["iters"] / 2, -2)


def test_cpu_plan_trains_in_bf16_where_the_cpu_computes_it_and_the_model_gains(monkeypatch) -> None:
    _native_bf16(monkeypatch, False)
    fp32_iters = translate_plan(ugatit, CPU, threads=2)["iters"]
    _native_bf16(monkeypatch, True)
    plan = translate_plan(ugatit, CPU, threads=2)
    assert plan["precision"] == "bf16" and plan["lr"] == ugatit.CPU_BF16_PLAN["lr"] != ugatit.CPU_PLAN["lr"]
    seconds = plan["iters"] * ugatit.CPU_BF16_STEP_S / thread_speedup(2)
    assert abs(seconds - CPU_BUDGET_S) < 0.1 * CPU_BUDGET_S and plan["iters"] > fp32_iters  # same time, more steps
    assert "precision" not in translate_plan(srunit, CPU, threads=2)  # no measured gain: stays fp32
    cfg = resolve_translate("ugatit", None, {}, plan=plan)
    line = describe_translate_plan("ugatit", cfg, CPU, 2, ugatit)
    assert f"{plan['iters']} iterations on cpu in bf16 with 2 threads" in line
    assert f"({ugatit.CPU_BF16_STEP_S / thread_speedup(2):.2f} s per iteration, estimated)" in line
    cfg = resolve_translate("ugatit", None, {"precision": "fp32"}, plan=plan)  # the flag wins
    assert cfg["precision"] == "fp32"
    assert f"({ugatit.CPU_STEP_S / thread_speedup(2):.2f} s per iteration, estimated)" in describe_translate_plan(
        "ugatit", cfg, CPU, 2, ugatit)


def test_gpu_plan_is_the_models_full_defaults_and_tunit_has_none() -> None:
    assert translate_plan(ugatit, GPU) == {} and translate_plan(tunit, CPU) == {}
    cfg = resolve_translate("ugatit", None, {}, plan=translate_plan(ugatit, GPU))
    assert cfg["img_size"] == 256 and cfg["ch"] == 64 and cfg["ugatit_size"] == "full"


def test_cpu_plan_trains_on_crops_of_128px_images_where_the_folder_allows() -> None:
    for module in (srunit, ugatit):
        whole = translate_plan(module, CPU, threads=2)
        assert whole["img_size"] == 64 and "crop_size" not in whole
        assert translate_plan(module, CPU, threads=2, source_side=127) == whole  # images too small to crop from
        plan = translate_plan(module, CPU, threads=2, source_side=128)
        assert (plan["img_size"], plan["crop_size"]) == (128, 64)
        assert plan["iters"] == whole["iters"]  # a step costs what a 64 px step does
        cfg = resolve_translate(module.__name__.rsplit(".", 1)[1], None, {}, plan=plan)
        assert (cfg["img_size"], cfg["crop_size"]) == (128, 64)
        # a size asked for on the command line keeps the whole-image plan
        for explicit in ({"img_size": 96}, {"crop_size": 0}):
            assert translate_plan(module, CPU, threads=2, source_side=512, explicit=explicit) == whole
    # U-GAT-IT's full generator cannot train on crops; the light one, which the plan uses anyway, can
    assert "crop_size" not in translate_plan(ugatit, CPU, source_side=256, explicit={"ugatit_size": "full"})
    assert translate_plan(ugatit, CPU, source_side=256, explicit={"ugatit_size": "light"})["crop_size"] == 64
    assert translate_plan(tunit, CPU, source_side=256) == {} and translate_plan(srunit, GPU, source_side=256) == {}


def test_typical_side_is_the_median_shorter_side_of_the_runs_images(toy_discover_run, animal_folder) -> None:
    sides = [min(Image.open(animal_folder / row["path"]).size) for row in read_csv(toy_discover_run / "images.csv")]
    assert typical_side(toy_discover_run) == int(np.median(sides))
    assert typical_side(toy_discover_run.parent) is None  # no images.csv


def test_translate_on_large_images_trains_on_crops_and_writes_whole_images(toy_discover_run, tmp_path,
                                                                          monkeypatch) -> None:
    _native_bf16(monkeypatch, False)
    # the toy folder's silhouettes are small; the folder is taken as one of 128 px images
    monkeypatch.setattr(translate_module, "typical_side", lambda run: 128)
    a, b, _ = _two_clusters(toy_discover_run)
    out = io.StringIO()
    run = translate(a, b, run=toy_discover_run, model="srunit", iters=2, batch_size=2, device="cpu", threads=1,
                    project=str(tmp_path / "runs"), console=Console(file=out, width=300))
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["img_size"], cfg["crop_size"]) == (128, 64)
    assert "plan: srunit at 128 px, trained on 64 px crops (" in out.getvalue()
    written = next((run / "outputs").rglob("*.png"))
    assert Image.open(written).size == (128, 128)


def test_flags_win_over_the_plan() -> None:
    plan = translate_plan(srunit, CPU, threads=2)
    cfg = resolve_translate("srunit", None, {"ngf": 8, "iters": 7}, plan=plan)
    assert cfg["ngf"] == 8 and cfg["iters"] == 7 and cfg["ndf"] == 16 and cfg["img_size"] == 64
    line = describe_translate_plan("srunit", cfg, CPU, 2, srunit)
    assert line.startswith("plan: srunit at 64 px (ngf 8, ndf 16,") and "7 iterations on cpu with 2 threads" in line
    # crops of 64 px from 128 px images: priced as a 64 px step, and said
    cfg = resolve_translate("srunit", None, {"img_size": 128, "crop_size": 64, "iters": 7}, plan=plan)
    line = describe_translate_plan("srunit", cfg, CPU, 2, srunit)
    assert line.startswith("plan: srunit at 128 px, trained on 64 px crops (")
    assert f"({srunit.CPU_STEP_S / thread_speedup(2):.2f} s per iteration, estimated)" in line


def test_translate_prints_the_plan_before_training(toy_discover_run, tmp_path, monkeypatch) -> None:
    _native_bf16(monkeypatch, False)
    a, b, _ = _two_clusters(toy_discover_run)
    out = io.StringIO()
    console = Console(file=out, width=300)
    run = translate(a, b, run=toy_discover_run, model="ugatit", img_size=32, iters=2, batch_size=2, device="cpu",
                    threads=1, project=str(tmp_path / "runs"), console=console)
    text = out.getvalue()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["ch"] == ugatit.CPU_PLAN["ch"] and cfg["ugatit_size"] == "light"  # from the plan
    assert cfg["img_size"] == 32 and cfg["iters"] == 2 and cfg["batch_size"] == 2  # the flags
    assert "timed_step_s" not in cfg  # --iters given: nothing to time
    plan_line = next(line for line in text.splitlines() if line.startswith("plan: "))
    assert "ugatit at 32 px (ugatit_size light, ch 16, n_res 2, lr 0.0002, batch 2), 2 iterations on cpu with 1 " \
        "thread" in plan_line
    assert text.index("plan: ") < text.index("wrote ")


def test_timed_schedule_fits_the_minutes_to_the_measured_step() -> None:
    schedule = timed_schedule(0.2, 30, {})
    assert schedule["iters"] == round(30 * 60 / (0.2 * LOOP_OVERHEAD), -2) == 7600
    assert schedule["sample_every"] == schedule["ckpt_every"] == 760 and schedule["timed_step_s"] == 0.2
    slow = timed_schedule(0.4, 30, {"ckpt_every": 50})  # twice the step, half the iterations; flags stay
    assert slow["iters"] == 3800 and "ckpt_every" not in slow
    assert timed_schedule(0.5, 0.1, {})["iters"] == 10  # a short budget still trains a few steps
    assert timed_schedule(1e-4, 30, {})["iters"] == 20_000  # capped


def test_what_gets_timed() -> None:
    assert wants_timing({}, None, CPU, ugatit, distributed=False)  # the CPU plan
    assert not wants_timing({"iters": 50}, None, CPU, ugatit, distributed=False)  # the count was given
    assert not wants_timing({}, None, GPU, ugatit, distributed=False)  # the GPU runs the paper's schedule...
    assert wants_timing({"minutes": 5}, "full", GPU, ugatit, distributed=False)  # ...unless minutes are asked for
    assert not wants_timing({}, None, CPU, tunit, distributed=False)  # trains nothing
    assert not wants_timing({}, None, CPU, srunit, distributed=True)  # every rank must train the same count


def test_a_plan_run_times_its_steps_here_and_trains_that_many(toy_discover_run, tmp_path, monkeypatch) -> None:
    _native_bf16(monkeypatch, False)
    a, b, _ = _two_clusters(toy_discover_run)
    out = io.StringIO()
    run = translate(a, b, run=toy_discover_run, model="ugatit", img_size=32, batch_size=2, minutes=0.05,
                    device="cpu", threads=1, project=str(tmp_path / "runs"), console=Console(file=out, width=300))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["iters"] == timed_schedule(cfg["timed_step_s"], 0.05, {})["iters"]  # 3 s at the timed step
    assert cfg["sample_every"] == 100 and cfg["ckpt_every"] == 100
    plan_line = next(line for line in out.getvalue().splitlines() if line.startswith("plan: "))
    assert f"{cfg['iters']} iterations on cpu with 1 thread" in plan_line
    assert f"({cfg['timed_step_s'] * LOOP_OVERHEAD:.2f} s per iteration, timed on this machine)" in plan_line
    steps = [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()]
    assert steps[-1] == cfg["iters"]  # trained the timed count, not the plan's estimate


def test_tunit_plan_counts_the_generator_iterations_of_the_run_and_its_parents(toy_discover_run, tmp_path) -> None:
    assert tunit.generator_iterations(toy_discover_run) == 6  # 12 iterations, the first half heads only
    parent, child = tmp_path / "parent", tmp_path / "child"
    for folder, cfg in ((parent, {"iters": 3000, "warmup_frac": 0.5, "from_run": ""}),
                        (child, {"iters": 1000, "warmup_frac": 0.1, "from_run": str(parent)})):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(cfg))
    assert tunit.generator_iterations(child) == 1500 + 900


def test_tunit_translate_says_when_the_generator_is_a_preview(toy_discover_run, tmp_path) -> None:
    a, b, _ = _two_clusters(toy_discover_run)
    out = io.StringIO()
    translate(a, b, run=toy_discover_run, model="tunit", project=str(tmp_path / "runs"),
              console=Console(file=out, width=300))
    lines = out.getvalue().splitlines()
    plan = next(i for i, line in enumerate(lines) if line.startswith("plan: "))
    assert "the discover run's generator (6 iterations) translates at 32 px" in lines[plan]
    assert lines[plan + 1].startswith("  6 generator iterations give a rough preview")
    source = json.loads((toy_discover_run / "config.json").read_text())["source"]
    assert lines[plan + 1].endswith(f"i2icurate discover {source} --from {toy_discover_run} --iters 2000 "
                                    "--warmup-frac 0.02")
