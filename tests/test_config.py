"""The options table: presets, overrides, range checks and did-you-mean errors."""

import pytest

from i2icurate.config import DISCOVER, SCRATCH_K, reject_options_on_resume, resolve
from i2icurate.errors import UserError


def test_defaults_are_the_reference_schedule():
    cfg = resolve("discover")
    assert (cfg["k"], cfg["img_size"], cfg["batch_size"], cfg["iters"], cfg["style_dim"]) == ("auto", 128, 32, 200_000,
                                                                                              128)
    assert cfg["warmup_frac"] * cfg["iters"] == pytest.approx(65_000)


def test_preset_then_explicit_override():
    cfg = resolve("discover", "tiny", iters=50, k=None)
    assert cfg["img_size"] == 32 and cfg["iters"] == 50 and cfg["k"] == SCRATCH_K  # k=None: not given, the preset's
    assert DISCOVER["k"].default == "auto"


def test_unknown_option_suggests_the_close_name():
    with pytest.raises(UserError, match="did you mean 'img_size'"):
        resolve("discover", img_sz=64)


def test_out_of_range_value_names_the_flag():
    with pytest.raises(UserError, match="--img-size: 512 is above the maximum 256"):
        resolve("discover", img_size=512)
    with pytest.raises(UserError, match="unknown preset"):
        resolve("discover", "huge")


def test_resume_refuses_explicit_options_by_flag_name():
    reject_options_on_resume({"img_size": None, "iters": None})
    with pytest.raises(UserError, match="drop --img-size, --iters$"):
        reject_options_on_resume({"iters": 5, "img_size": 64, "k": None})
