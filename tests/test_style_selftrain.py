"""bench/style_selftrain.py on real glyphs: the rendering statistics tell a bold face from a light one, and
cross-validated self-training carries a partly wrong typeface partition back towards the true one."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_bench

style_sets = load_bench("style_sets.py")
load_bench("style_descriptors.py")  # imported by name by style_selftrain
style_selftrain = load_bench("style_selftrain.py")


@pytest.fixture(scope="module")
def glyphs(tmp_path_factory):
    """60 letters drawn in a light serif and in a bold sans, decoded at 32 px as discover's CPU plan reads them."""
    folder = tmp_path_factory.mktemp("typefaces")
    style_sets.write_typefaces(folder, 2, max_glyphs=60)
    images, truth = style_selftrain._load_folder(folder, 32)
    return images, np.unique(truth, return_inverse=True)[1], truth


def test_bold_strokes_are_deeper_than_serif_strokes(glyphs):
    images, classes, truth = glyphs
    bold = classes == classes[truth.index("sans-bold")]
    depth = np.array([style_selftrain.rendering_statistics(im)["stroke"][:8] @ np.arange(1, 9) for im in images])
    assert depth[bold].mean() > depth[~bold].mean()
    # black glyphs on white: no colour at all
    assert all(style_selftrain.rendering_statistics(im)["saturation"][0] == 1.0 for im in images[:5])


def test_self_training_repairs_a_partly_wrong_partition(glyphs):
    images, classes, _ = glyphs
    features = style_selftrain.joint_features(style_selftrain.feature_blocks(images))
    start = classes.copy()
    flipped = np.random.default_rng(0).choice(len(start), len(start) // 4, replace=False)
    start[flipped] = 1 - start[flipped]  # 75 % right
    labels, probabilities = style_selftrain.self_train(features, start, seed=0)
    right = max((labels == classes).mean(), (labels != classes).mean())
    assert right > 0.9
    assert probabilities.shape == (len(images), 2)
