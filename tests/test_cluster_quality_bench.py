"""bench/cluster_quality.py --labels-per-class: the labels.csv it gives discover names that many images of every
class, each as the cluster of its class, in a form discover's own reader takes."""

from __future__ import annotations

from collections import Counter

from i2icurate.data.domains import read_labels
from tests.conftest import load_bench

load_bench("style_sets.py")  # imported by name by cluster_quality
cluster_quality = load_bench("cluster_quality.py")


def test_class_labels_name_n_images_of_every_class(animal_folder, tmp_path):
    dest = cluster_quality.write_class_labels(animal_folder, 3, tmp_path / "labels.csv", seed=0)

    labels = read_labels(dest)
    classes = sorted(d.name for d in animal_folder.iterdir() if d.is_dir())
    assert Counter(labels.values()) == {f"cluster_{i}": 3 for i in range(len(classes))}
    for path, label in labels.items():
        assert (animal_folder / path).is_file()
        assert label == f"cluster_{classes.index(path.split('/')[0])}"
    again = cluster_quality.write_class_labels(animal_folder, 3, tmp_path / "again.csv", seed=0)
    assert read_labels(again) == labels  # seeded
    other = cluster_quality.write_class_labels(animal_folder, 3, tmp_path / "other.csv", seed=1)
    assert read_labels(other) != labels
