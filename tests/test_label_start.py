"""A fresh labelled run starts its heads from the labels' logistic regression, in the labels' cluster numbers; labels
that leave a cluster unnamed (or name it only through excluded images) keep the k-means start."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from i2icurate.data.demo import ANIMAL_CLASSES
from i2icurate.engines.features import cached_features
from i2icurate.engines.heads import LABEL_START_C, HeadPhase, label_start
from i2icurate.engines.tunit import build_guiding
from i2icurate.runs import read_csv


@pytest.fixture(scope="module")
def animal_phase(pretrained_run):
    """The default run's cached trunk features of the 200 animal images, their classes and a fresh phase maker."""
    cfg = json.loads((pretrained_run / "config.json").read_text())
    paths = [r["path"] for r in read_csv(pretrained_run / "images.csv")]
    classes = torch.tensor([ANIMAL_CLASSES.index(p.split("/")[0]) for p in paths])
    features = cached_features(pretrained_run, len(paths))

    def make(keep: torch.Tensor | None = None) -> HeadPhase:
        torch.manual_seed(0)
        return HeadPhase(build_guiding(cfg), *features, cfg, torch.device("cpu"), keep=keep)

    return make, classes


def _three_per_class(classes: torch.Tensor) -> torch.Tensor:
    labels = torch.full_like(classes, -1)
    for c in range(len(ANIMAL_CLASSES)):
        labels[torch.nonzero(classes == c)[:3, 0]] = c
    return labels


def _assign(phase: HeadPhase) -> list[torch.Tensor]:
    with torch.no_grad():
        return [head(phase.desc[0]).argmax(1) for head in phase.E.heads]


def test_every_head_starts_in_the_labels_numbering(animal_phase):
    make, classes = animal_phase
    labels = _three_per_class(classes)
    phase = make()
    phase.fit(labels)
    known = labels >= 0
    for assigned in _assign(phase):
        assert torch.equal(assigned[known], labels[known])  # the labelled images sit in their own clusters
        # and the unlabelled ones mostly in their class's, with no renumbering: chance is 0.1
        assert (assigned[~known] == classes[~known]).float().mean() > 0.5
    unlabelled = make()
    unlabelled.fit()
    kmeans_agreement = max((a[~known] == classes[~known]).float().mean() for a in _assign(unlabelled))
    assert kmeans_agreement < 0.5  # a k-means start numbers its clusters its own way


def test_labels_that_miss_a_cluster_keep_the_kmeans_start(animal_phase):
    make, classes = animal_phase
    reference = make()
    reference.fit()
    labels = _three_per_class(classes)
    partial = labels.clone()
    partial[partial == 9] = -1  # nobody named cluster 9
    phase = make()
    phase.fit(partial)
    keep = torch.ones(len(classes), dtype=torch.bool)
    keep[labels == 4] = False  # cluster 4 is named only by images the reviewer excluded
    excluded = make(keep)
    excluded.fit(labels)
    for other in (phase, excluded):
        for a, b in zip(reference.E.heads, other.E.heads, strict=True):
            assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_two_clusters_give_scikit_learns_probabilities(animal_phase):
    """scikit-learn keeps one row for two classes: the two-row head must give the same probabilities."""
    make, classes = animal_phase
    phase = make()
    phase.fit_descriptor()
    phase.prepare()
    labels = torch.where(classes < 2, classes, torch.full_like(classes, -1))
    weight, bias = label_start(phase.desc, labels, 2)
    assert weight.shape == (2, phase.desc.shape[-1]) and bias.shape == (2,)
    rows = phase.desc[:, labels >= 0].double().numpy()
    reference = LogisticRegression(C=LABEL_START_C, max_iter=5000).fit(
        rows.reshape(-1, rows.shape[-1]), np.tile(labels[labels >= 0].numpy(), rows.shape[0]))
    probabilities = torch.softmax(phase.desc[0] @ weight.T + bias, 1)[:, 1].numpy()
    assert np.allclose(probabilities, reference.predict_proba(phase.desc[0].double().numpy())[:, 1], atol=1e-4)
    assert label_start(phase.desc, torch.where(classes == 0, classes, torch.full_like(classes, -1)), 2) is None
