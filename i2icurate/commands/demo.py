"""`i2icurate demo`: write the built-in demo images (real animal silhouettes) as a folder of PNGs."""

from __future__ import annotations

from pathlib import Path

from i2icurate.data.demo import write_demo_images


def demo(out: str | Path = "demo_data", dataset: str = "animal-mnist", per_class: int | None = 100) -> Path:
    """Write `per_class` images of each class into `out/<class>/` and return the folder."""
    return write_demo_images(out, dataset, per_class)
