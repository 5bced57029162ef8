"""bench/style_sets.py: a style-domain pair whose two images are the same picture is left out of the set."""

from __future__ import annotations

import shutil

from i2icurate.data.scan import scan_folder
from tests.conftest import load_bench

style_sets = load_bench("style_sets.py")


def test_identical_pairs_are_dropped_and_differing_pairs_kept(animal_folder, tmp_path):
    files = scan_folder(animal_folder).files
    first, second, third = (animal_folder / f for f in (files[0], files[60], files[120]))
    for folder in ("colour", "line"):
        (tmp_path / folder).mkdir()
    shutil.copy(first, tmp_path / "colour" / "same.png")  # one picture in both classes
    shutil.copy(first, tmp_path / "line" / "same.png")
    shutil.copy(second, tmp_path / "colour" / "other.png")  # two different pictures
    shutil.copy(third, tmp_path / "line" / "other.png")

    kept = style_sets.drop_identical_pairs(tmp_path, ("colour", "line"), ["same", "other"])

    assert kept == ["other"]
    assert sorted(p.name for p in tmp_path.glob("*/*.png")) == ["other.png", "other.png"]
