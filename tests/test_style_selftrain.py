"""bench/style_selftrain.py on real glyphs: its low-level blocks are the package's rendering statistics, and
cross-validated self-training carries a partly wrong typeface partition back towards the true one."""

from __future__ import annotations

import numpy as np
import pytest

from i2icurate.data.augment import signed_from_u8
from i2icurate.models.backbones.rendering import FAMILIES, rendering_statistics
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


def test_low_level_blocks_are_the_package_rendering_statistics(glyphs):
    images, classes, truth = glyphs
    families = style_selftrain.rendering_statistics(images)
    assert [(name, values.shape) for name, values in families.items()] == [
        (name, (len(images), width)) for name, width in FAMILIES]
    assert np.allclose(np.concatenate(list(families.values()), 1), rendering_statistics(signed_from_u8(images)).numpy(),
                       atol=1e-6)
    bold = classes == classes[truth.index("sans-bold")]
    depth = families["stroke"][:, :8] @ np.arange(1, 9)
    assert depth[bold].mean() > depth[~bold].mean()
    assert (families["saturation"][:, 0] == 1.0).all()  # black glyphs on white: no colour at all


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
