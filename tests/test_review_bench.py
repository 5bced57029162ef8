"""The pure parts of bench/review_semi.py: the simulated reviewers name only clusters the run has."""

from __future__ import annotations

import numpy as np

from i2icurate.data.domains import NEW_CLUSTER
from tests.conftest import load_bench

bench = load_bench("review_semi.py")


def test_reviewers_of_a_run_with_fewer_clusters_than_classes_name_only_its_clusters():
    # 3 classes in 2 clusters: a and b share cluster 0 (b the minority), c has cluster 1
    truth = ["a"] * 6 + ["b"] * 4 + ["c"] * 6
    clusters = np.array([0] * 10 + [1] * 6)
    confidence = np.linspace(0.1, 0.9, len(truth))  # b's images are among the least sure
    rows = [{"path": f"{t}/{i}.png"} for i, t in enumerate(truth)]
    mapping = bench.class_to_cluster(truth, clusters)
    assert mapping == {"a": 0, "c": 1}  # b has no cluster to be named
    for name, reviewer in bench.REVIEWERS.items():
        labels = reviewer(rows, truth, clusters, confidence, mapping, 0.5, 3)
        named = {label for _, label in labels}
        assert named <= {"cluster_0", "cluster_1", NEW_CLUSTER, "exclude"}, (name, named)
        assert not any(path.startswith("b/") and label.startswith("cluster_") for path, label in labels), name
    assert {label for _, label in bench.new(rows, truth, clusters, confidence, mapping, 0.5, 3)} == {NEW_CLUSTER}
