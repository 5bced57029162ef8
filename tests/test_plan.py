"""discover's default schedule: an explicit --iters beyond the plan's trains the generator, not the heads."""

from __future__ import annotations

import pytest
import torch

from i2icurate.commands.discover import _start_run
from i2icurate.config import resolve
from i2icurate.plan import PLAN_MIN_HEAD_STEPS, fit_plan_to_iters, hardware_plan

CPU = torch.device("cpu")


def test_cpu_plan_trains_the_gan_at_six_times_the_papers_rates_the_gpu_plan_at_the_papers():
    assert hardware_plan(CPU, 600, threads=1)["lr_g"] == hardware_plan(CPU, 600, threads=1)["lr_d"] == 6e-4
    cfg = resolve("discover", None, defaults=hardware_plan(torch.device("cuda"), 600))
    assert cfg["lr_g"] == cfg["lr_d"] == 1e-4


def test_more_iterations_than_the_plan_go_to_the_generator_fewer_scale_both_phases():
    plan = hardware_plan(CPU, 600, threads=1)
    heads = plan["warmup_frac"] * plan["iters"]
    assert heads == pytest.approx(PLAN_MIN_HEAD_STEPS)  # a small folder: the head minimum
    more = fit_plan_to_iters(plan, 5000)
    assert more["warmup_frac"] * 5000 == pytest.approx(heads)  # the same head updates, 3,000 generator iterations
    fewer = fit_plan_to_iters(plan, plan["iters"] // 10)
    assert fewer["warmup_frac"] == pytest.approx(plan["warmup_frac"])  # both phases a tenth


def test_discover_applies_it_unless_warmup_frac_is_given(animal_folder, tmp_path):
    plan = hardware_plan(CPU, 200)
    heads = plan["warmup_frac"] * plan["iters"]
    _, cfg, _ = _start_run(animal_folder, None, {"k": 2, "iters": 4000, "project": str(tmp_path / "a")})
    assert cfg["warmup_frac"] * cfg["iters"] == pytest.approx(heads)
    _, cfg, _ = _start_run(animal_folder, None, {"k": 2, "iters": 4000, "warmup_frac": 0.1,
                                                 "project": str(tmp_path / "b")})
    assert cfg["warmup_frac"] == 0.1


def test_a_style_plan_decodes_at_the_trunks_size_in_the_generators_time(animal_folder, tmp_path):
    content = hardware_plan(CPU, 10_000, threads=2)
    style = hardware_plan(CPU, 10_000, threads=2, domains="style")
    assert (content["img_size"], style["img_size"], style["backbone_size"]) == (32, 64, 64)

    def generator(plan):
        return plan["iters"] * (1 - plan["warmup_frac"])

    assert generator(style) == pytest.approx(generator(content) / 4, rel=0.02)  # 4x the pixels per step
    common = {"k": 2, "iters": 100, "domains": "style"}
    _, cfg, _ = _start_run(animal_folder, None, {**common, "project": str(tmp_path / "a")})
    assert cfg["img_size"] == cfg["backbone_size"] == 64
    _, cfg, _ = _start_run(animal_folder, None, {**common, "backbone_size": 32, "project": str(tmp_path / "b")})
    assert cfg["img_size"] == 32  # the size the trunk reads
    _, cfg, _ = _start_run(animal_folder, None, {**common, "img_size": 48, "project": str(tmp_path / "c")})
    assert cfg["img_size"] == 48  # a flag wins
    _, cfg, _ = _start_run(animal_folder, None, {"k": 2, "iters": 100, "project": str(tmp_path / "d")})
    assert cfg["img_size"] == 32


def _folder_at(animal_folder, dest, side: int, count: int = 12):
    """`count` real animal silhouettes saved at `side` x `side` px."""
    from PIL import Image

    from i2icurate.data.scan import scan_folder

    dest.mkdir(parents=True)
    for i, rel in enumerate(scan_folder(animal_folder).files[:: 10][:count]):
        Image.open(animal_folder / rel).convert("RGB").resize((side, side)).save(dest / f"{i}.png")
    return dest


def test_the_gpu_plan_reads_a_style_folder_at_no_more_than_its_images_size(animal_folder, tmp_path, monkeypatch):
    import i2icurate.commands.discover as discover_module
    from i2icurate.data.imageio import median_side
    from i2icurate.data.scan import scan_folder
    from i2icurate.plan import style_trunk_size

    monkeypatch.setattr(discover_module, "resolve_device", lambda _: torch.device("cuda"))  # the GPU plan, on a CPU
    small, large = _folder_at(animal_folder, tmp_path / "s64", 64), _folder_at(animal_folder, tmp_path / "s160", 160)
    assert median_side(small, scan_folder(small).files) == 64
    style = {"k": 2, "iters": 100, "domains": "style"}
    _, cfg, _ = _start_run(small, None, {**style, "project": str(tmp_path / "a")})
    assert (cfg["backbone_size"], cfg["img_size"]) == (64, 64)  # 64 px images are not upsampled to the plan's 128
    _, cfg, _ = _start_run(large, None, {**style, "project": str(tmp_path / "b")})
    assert (cfg["backbone_size"], cfg["img_size"]) == (128, 128)
    _, cfg, _ = _start_run(small, None, {"k": 2, "iters": 100, "project": str(tmp_path / "c")})
    assert cfg["backbone_size"] == 128  # content runs keep the plan's trunk
    _, cfg, _ = _start_run(small, None, {**style, "backbone_size": 128, "project": str(tmp_path / "d")})
    assert cfg["backbone_size"] == 128  # a flag wins
    assert [style_trunk_size(128, s) for s in (28, 100, 500, None)] == [64, 96, 128, 128]
    assert style_trunk_size(64, 512) == 64  # the CPU plan's trunk size is never raised
