"""The review grid end to end: a discover run's FiftyOne dataset served by the App on loopback, in headless Chromium.

The dataset is the one `build_dataset` makes of the shared toy discover run (200 real animal-mnist images), in an
isolated database (a temporary ``FIFTYONE_DATABASE_DIR`` and a random ``FIFTYONE_DATABASE_NAME``). The screenshot is
written under the test's temporary folder, and to ``docs/images/review_grid.png`` when I2ICURATE_UPDATE_DOCS=1.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from tests import app_harness

REPO = Path(__file__).resolve().parents[1]
DOCS_PNG = REPO / "docs" / "images" / "review_grid.png"
WIDTH, HEIGHT = 1400, 900
MIN_TILES = 12  # sample tiles that must have drawn before the screenshot counts as a rendered grid

# `make test` installs Chromium; without it this test fails rather than skipping.
UPDATE_DOCS = os.environ.get("I2ICURATE_UPDATE_DOCS") == "1"  # refresh docs/images/review_grid.png from this run


@pytest.fixture(scope="module")
def app_dataset(toy_discover_run, tmp_path_factory) -> Iterator[tuple[str, dict[str, str]]]:
    """(dataset name, environment for the App server): the toy run's review dataset in an isolated database."""
    if "fiftyone" not in sys.modules:
        # FiftyOne reads its database settings once, at import, and the App servers that later tests start inherit
        # os.environ: so the isolated database is set for the rest of the session, not restored after this module.
        os.environ["FIFTYONE_DATABASE_DIR"] = str(tmp_path_factory.mktemp("fo_db"))
        os.environ["FIFTYONE_DATABASE_NAME"] = f"i2icurate_test_{uuid.uuid4().hex[:10]}"
    from i2icurate.curation.dataset import build_dataset, dataset_name
    from i2icurate.curation.fo_env import import_fiftyone

    fo = import_fiftyone()
    existed = fo.dataset_exists(dataset_name(toy_discover_run))
    dataset = build_dataset(toy_discover_run, Console(quiet=True))
    # The App server runs in another process: hand it the database (and plugins folder) this process uses.
    env = dict(os.environ, FIFTYONE_DATABASE_DIR=str(fo.config.database_dir),
               FIFTYONE_DATABASE_NAME=str(fo.config.database_name))
    if fo.config.database_uri:
        env["FIFTYONE_DATABASE_URI"] = str(fo.config.database_uri)
    try:
        yield dataset.name, env
    finally:
        if not existed and fo.dataset_exists(dataset.name):  # leave a dataset another test made alone
            fo.delete_dataset(dataset.name)


def _assert_not_blank(png: Path) -> None:
    """The PNG is at least 1000x600 and shows varied content (not a blank or single-colour page)."""
    image = Image.open(png).convert("RGB")
    assert image.width >= 1000 and image.height >= 600, image.size
    pixels = np.asarray(image)
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    assert pixels.std() > 25, f"screenshot looks blank (pixel std {pixels.std():.1f})"
    assert colours > 500, f"screenshot looks blank ({colours} distinct colours)"


def test_review_grid_renders_in_headless_chromium(app_dataset, tmp_path) -> None:
    """The App serves the dataset on 127.0.0.1 and headless Chromium renders its sample grid."""
    name, env = app_dataset
    port = app_harness.find_free_port()
    server = app_harness.serve_app(name, port, env, log_path=tmp_path / "app_server.log")
    tree = app_harness.descendants(server.pid)  # the FiftyOne service wrapper and the server under it
    try:
        assert app_harness.http_status(f"http://127.0.0.1:{port}/") == 200
        url = f"http://127.0.0.1:{port}/datasets/{name}"

        shot = app_harness.screenshot_app(url, tmp_path / "review_grid.png", WIDTH, HEIGHT, wait_ms=40000,
                                          min_tiles=MIN_TILES)
        assert shot.ready, f"fewer than {MIN_TILES} sample tiles drew within 40 s (see {shot.path})"
        _assert_not_blank(shot.path)
        assert name in shot.html and 'data-cy="tag-pseudo_domain"' in shot.html  # tiles carry the label
        if UPDATE_DOCS:
            DOCS_PNG.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot.path, DOCS_PNG)

        # Chromium's own --dump-dom (virtual-time budget) gets the App's page too; whether the grid is in it yet is
        # a race (see app_harness.screenshot_cli), so only the page itself is checked here.
        dom = app_harness.dump_dom(url, wait_ms=15000, width=WIDTH, height=HEIGHT)
        assert "<title>FiftyOne</title>" in dom
    finally:
        app_harness.stop_app(server)
    assert server.poll() is not None, "the App server is still running"
    assert not app_harness.still_running(tree), "processes under the App server outlived it"
