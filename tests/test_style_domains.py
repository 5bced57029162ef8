"""discover --domains style on real glyphs drawn in two typefaces: the heads read how images are rendered."""

from __future__ import annotations

import io
import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

from i2icurate.commands.discover import discover
from i2icurate.config import domain_defaults
from i2icurate.data.cache import load_cache
from i2icurate.engines.checkpoint import load_checkpoint, save_checkpoint
from i2icurate.engines.features import (
    CONTENT_NPY,
    CROP_MOMENTS_NPZ,
    STYLE_NPY,
    cached_crop_moments,
    cached_features,
    crop_moments,
)
from i2icurate.engines.heads import (
    CONTENT_GROUPS,
    MOMENT_SPREAD,
    HeadPhase,
    content_groups,
    content_mi,
    edge_neighbours,
    folder_edge_neighbours,
    moment_normalised,
    neighbourhood_spread,
    reciprocal,
)
from i2icurate.engines.tunit import build_guiding
from i2icurate.models.backbones import load_backbone
from i2icurate.models.backbones.style_trunk import StyleTrunk, crop_boxes
from i2icurate.models.tunit.style_guiding import CROP_DIM, StyleGuidingNetwork
from i2icurate.runs import read_csv
from tests.conftest import load_bench
from tests.test_discover_cli import run_cli

style_sets = load_bench("style_sets.py")
cluster_quality = load_bench("cluster_quality.py")

# the default plan made toy-sized: the trunk reads 32 px, 40 head updates, no generator step
HEADS_ONLY = {"k": 2, "iters": 40, "warmup_frac": 1.0, "head_batch": 64, "batch_size": 16, "backbone_size": 32,
              "workers": 1, "threads": 1, "eval_labels": "folders", "ckpt_every": 20}


@pytest.fixture(scope="module")
def typefaces(tmp_path_factory):
    """The same 60 letters drawn in DejaVu Serif and DejaVu Sans Bold (matplotlib's fonts): 120 images."""
    folder = tmp_path_factory.mktemp("glyphs") / "typefaces"
    style_sets.write_typefaces(folder, 2, max_glyphs=60)
    return folder


@pytest.fixture(scope="module")
def runs(typefaces, tmp_path_factory):
    """One heads-only run per --domains value on the typefaces, and what the style run printed."""
    project = tmp_path_factory.mktemp("domain_runs")
    printed = Console(record=True, width=300, file=io.StringIO())
    style = discover(typefaces, domains="style", project=str(project), name="style", console=printed, **HEADS_ONLY)
    content = discover(typefaces, domains="content", project=str(project), name="content",
                       console=Console(quiet=True), **HEADS_ONLY)
    return {"style": style, "content": content, "printed": printed.export_text()}


def _summary(run):
    return json.loads((run / "summary.json").read_text())


def test_style_heads_separate_typefaces_that_content_heads_mix(runs):
    style, content = _summary(runs["style"]), _summary(runs["content"])
    # measured: 0.66 against 0.53 (the pooled features group the glyphs by letter shape, not by typeface)
    assert style["scores"]["acc"] >= 0.6
    assert style["scores"]["acc"] >= content["scores"]["acc"] + 0.06
    assert style["domains"] == "style" and content["domains"] == "content"
    knn = {name: json.loads((runs[name] / "config.json").read_text())["knn"] for name in ("style", "content")}
    assert knn == {"style": 50, "content": 20}  # DOMAIN_DEFAULTS: style domains are broad
    centring = {name: json.loads((runs[name] / "config.json").read_text())["content_centring"] for name in runs
                if name != "printed"}
    assert centring == {"style": 0.75, "content": 0.0}  # and hold every kind of content
    spread = {name: json.loads((runs[name] / "config.json").read_text())["w_neighbourhood"] for name in runs
              if name != "printed"}
    assert spread == {"style": 1.0, "content": 0.0}  # and draw it in every rendering
    logged = [json.loads(line) for line in (runs["style"] / "stats.jsonl").read_text().splitlines()]
    assert any("loss/edge_spread" in row for row in logged)
    printed = runs["printed"]
    assert "clusters by style" in printed.split("TUNIT:")[0]  # in the plan, before training
    assert "clusters by style (--domains style: how the images are rendered)" in printed
    assert re.search(r"neighbourhood term: edge maps (as they are|moment-normalised) \(the more reciprocal\), "
                     r"\d+% of the neighbours count", printed)


def test_style_features_are_cached_and_export_assigns_what_the_heads_learned(runs):
    run = runs["style"]
    cfg = json.loads((run / "config.json").read_text())
    guiding = build_guiding(cfg)
    assert isinstance(guiding, StyleGuidingNetwork)
    assert np.load(run / STYLE_NPY).shape == (2, 120, guiding.trunk.style_dim)
    guiding.load_state_dict(load_checkpoint(run / "last.pt")["models"]["E_ema"])
    content, style = cached_features(run, 120)
    with torch.no_grad():
        desc = guiding.describe(torch.from_numpy(np.array(content[0])), torch.from_numpy(np.array(style[0])))
        learned = guiding.heads[int(guiding.best)](desc).argmax(1).numpy()
    exported = np.array([int(row["cluster"]) for row in read_csv(run / "assignments.csv")])
    assert (learned == exported).mean() >= 0.99  # export runs the trunk and rendering statistics on the images again


def test_a_retrain_from_a_style_run_keeps_its_domains_and_features(runs, typefaces, tmp_path):
    labels = cluster_quality.write_class_labels(typefaces, 10, tmp_path / "labels.csv")
    run = discover(typefaces, from_run=str(runs["style"]), labels=str(labels), project=str(tmp_path / "runs"),
                   console=Console(quiet=True), **{**HEADS_ONLY, "iters": 20, "knn": 30})
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["domains"] == "style"  # inherited with the networks
    assert cfg["knn"] == 30  # an explicit value wins over the style default
    assert cfg["w_neighbourhood"] == 1.0  # as the parent's clusters were found
    assert cfg["content_centring"] == 0.75  # inherited with the networks: the heads read the parent's descriptor
    assert np.array_equal(np.load(run / STYLE_NPY), np.load(runs["style"] / STYLE_NPY))
    assert _summary(run)["domains"] == "style"
    assert np.array_equal(np.load(run / CONTENT_NPY), np.load(runs["style"] / CONTENT_NPY))  # reused


def test_a_fresh_labelled_style_run_leaves_the_neighbourhood_term_out_and_a_retrain_keeps_it():
    style = {"domains": "style", "labels": "labels.csv"}
    assert domain_defaults(style)["w_neighbourhood"] == 0.0  # the labels lead
    assert domain_defaults({**style, "from_run": "runs/discover/a1"})["w_neighbourhood"] == 1.0
    assert domain_defaults({"domains": "style"})["w_neighbourhood"] == 1.0
    assert domain_defaults({"labels": "labels.csv"}) == {"w_neighbourhood": 0.0}  # content: no term either way
    assert domain_defaults({}) == {}


def test_a_retrain_from_a_style_run_of_an_older_descriptor_is_a_one_line_error(runs, typefaces, tmp_path):
    # a style run from before the crop part (features format 2) or the layout features (no format recorded)
    for recorded in (2, None):
        old = tmp_path / "runs" / "discover" / f"old{recorded}"
        shutil.copytree(runs["style"], old)
        cfg = json.loads((old / "config.json").read_text())
        cfg.pop("features_format")
        (old / "config.json").write_text(json.dumps({**cfg, **({} if recorded is None else
                                                                {"features_format": recorded})}))
        result = run_cli("discover", str(typefaces), "--from", str(old), "--project", str(tmp_path / "new"))
        assert result.returncode != 0
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1 and "Traceback" not in message
        assert "before its descriptor read image crops" in message and "afresh" in message
        assert not (tmp_path / "new").exists()  # nothing created


def test_a_retrain_from_a_style_run_made_before_the_content_centring_keeps_its_descriptor(runs, typefaces, tmp_path):
    """A run whose config has no content_centring (and whose checkpoint no layout groups) was made without it: a
    retrain --from it inherits 0 and loads its networks, rather than the style default's shapes."""
    old = tmp_path / "runs" / "discover" / "old"
    shutil.copytree(runs["style"], old)
    cfg = json.loads((old / "config.json").read_text())
    del cfg["content_centring"]
    (old / "config.json").write_text(json.dumps(cfg))
    state = load_checkpoint(old / "last.pt")
    for name in ("E", "E_ema"):
        for buffer in ("layout_axes", "layout_centroids", "group_means"):
            del state["models"][name][buffer]
    save_checkpoint(old / "last.pt", state)
    run = discover(typefaces, from_run=str(old), project=str(tmp_path / "new"), console=Console(quiet=True),
                   **{**HEADS_ONLY, "iters": 10})
    assert json.loads((run / "config.json").read_text())["content_centring"] == 0.0
    assert not hasattr(build_guiding(json.loads((run / "config.json").read_text())), "group_means")
    assert _summary(run)["scores"]["acc"] >= 0.6


def test_style_domains_on_the_from_scratch_trunk_is_a_one_line_error(typefaces, tmp_path):
    result = run_cli("discover", str(typefaces), "--backbone", "vgg11", "-k", "2", "--domains", "style",
                     "--project", str(tmp_path / "runs"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--domains style" in lines[0] and "from scratch" in lines[0], result.stderr
    assert not (tmp_path / "runs" / "discover").exists() or not any((tmp_path / "runs" / "discover").iterdir())


def test_content_mi_is_what_the_groups_say_about_the_clusters():
    groups = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])
    same = torch.nn.functional.one_hot(groups, 2).float()  # the clusters are the groups
    crossed = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1, 0, 1, 0, 1]), 2).float()  # half of each group
    assert content_mi(same, groups, 2).item() == pytest.approx(np.log(2), abs=1e-5)
    assert content_mi(crossed, groups, 2).item() == pytest.approx(0.0, abs=1e-6)
    assert content_mi(torch.full((8, 3), 1 / 3), groups, 2).item() == pytest.approx(0.0, abs=1e-6)


def test_neighbourhood_spread_is_zero_where_each_neighbourhood_spans_the_clusters():
    clusters = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 1]), 2).float()
    across = clusters[torch.tensor([[1], [0], [3], [2]])]  # each image's neighbour lies in the other cluster
    within = clusters[torch.tensor([[2], [3], [0], [1]])]  # ... in its own
    assert neighbourhood_spread(clusters, across).item() == pytest.approx(0.0, abs=1e-6)
    assert neighbourhood_spread(clusters, within).item() == pytest.approx(np.log(2), abs=1e-5)
    # an image whose neighbours weigh nothing (excluded, or not reciprocal) is left out: it is not pushed toward the
    # folder's mean assignment on its own
    assert neighbourhood_spread(clusters, within, torch.tensor([[1.0], [0.0], [0.0], [0.0]])).item() == pytest.approx(
        np.log(2), abs=1e-5)
    assert neighbourhood_spread(clusters, within, torch.zeros(4, 1)).item() == 0.0


def test_reciprocal_neighbours_are_those_that_list_the_image_back():
    nbrs = torch.tensor([[1, 2], [0, 3], [3, 1], [2, 1]])  # 2 lists 3 and 1; 1 does not list 2, nor 2 list 0
    assert reciprocal(nbrs).tolist() == [[True, False], [True, True], [True, False], [True, True]]


def test_the_edge_neighbours_are_often_the_same_letter_in_the_other_typeface(typefaces):
    paths = sorted(typefaces.rglob("*.png"))
    face = np.array([p.parent.name for p in paths])
    letter = np.array([p.name for p in paths])
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.BILINEAR)) for p in paths])

    def partner_rate(decoded: np.ndarray) -> float:
        nearest = edge_neighbours(decoded, 1)[:, 0].numpy()
        return float(((face[nearest] != face) & (letter[nearest] == letter)).mean())

    # measured: 0.79 of the 120 glyphs, where one image of the 119 others is the partner (chance 0.008); images
    # decoded at another size are compared at EDGE_SIZE too (16 px: 0.71)
    assert partner_rate(images) >= 0.6
    assert partner_rate(images[:, ::2, ::2]) >= 0.5


def test_moment_normalisation_centres_scales_and_unslants_the_edge_mass():
    edges = torch.zeros(1, 1, 32, 32)
    for row in range(4, 16):  # a thin stroke leaning right, in the top-left quarter
        edges[0, 0, row, 10 - row // 3] = 1.0
    out = moment_normalised(edges)[0, 0]
    coords = torch.linspace(-1, 1, 32)
    mass = out / out.sum()
    cx, cy = (mass * coords[None, :]).sum(), (mass * coords[:, None]).sum()
    dx, dy = coords[None, :] - cx, coords[:, None] - cy
    assert abs(cx.item()) < 0.05 and abs(cy.item()) < 0.05  # centred
    assert ((mass * (dx**2 + dy**2)).sum().sqrt().item()) == pytest.approx(MOMENT_SPREAD, rel=0.1)
    assert abs((mass * dx * dy).sum().item()) < 0.01  # upright: no x-y covariance left


def test_four_typefaces_get_moment_normalised_neighbours_that_find_the_same_letter(tmp_path):
    folder = tmp_path / "four"
    style_sets.write_typefaces(folder, 4, max_glyphs=60)
    paths = sorted(folder.rglob("*.png"))
    letter = np.array([p.name for p in paths])
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.BILINEAR)) for p in paths])
    found, mutual, normalised = folder_edge_neighbours(images, 3)
    assert torch.equal(mutual, reciprocal(found))
    # measured: 0.62 of the 3 neighbours show the same letter (in another face) against 0.35 for the edge maps as
    # they are, which are the less often reciprocal of the two (0.73 against 0.65); on the two faces above the maps
    # as they are win both ways (0.79 against 0.76)
    assert normalised
    assert (letter[found.numpy()] == letter[:, None]).mean() >= 0.5
    assert (letter[edge_neighbours(images, 3).numpy()] == letter[:, None]).mean() <= 0.45


def test_the_layout_features_find_the_same_letter_in_the_other_typeface(typefaces):
    paths = sorted(typefaces.rglob("*.png"))
    face = np.array([p.parent.name for p in paths])
    letter = np.array([p.name for p in paths])
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.BILINEAR)) for p in paths])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    trunk = StyleTrunk(load_backbone("efficientnet-lite0", 32).freeze())
    with torch.no_grad():
        pooled = trunk.backbone.maps(x)[1].mean(dim=(2, 3))
        layout, _ = trunk(x)  # a style trunk's content output is its layout
        torch.testing.assert_close(layout, trunk.layout(x))

    def partner_rate(features: torch.Tensor) -> float:
        """Share of glyphs whose most similar glyph in the other typeface is the same letter."""
        z = torch.nn.functional.normalize((features - features.mean(0)) / (features.std(0) + 1e-6), dim=1)
        sim = (z @ z.T).numpy()
        sim[face[:, None] == face[None, :]] = -np.inf
        return float((letter[sim.argmax(1)] == letter).mean())

    # measured: 0.48 against 0.33; the edge map drops much of how a letter is drawn and keeps its shape
    assert partner_rate(layout) >= partner_rate(pooled) + 0.05


def test_the_independence_term_makes_clusters_less_predictable_from_content(runs):
    run = runs["style"]
    # the term on the descriptor as it was measured, before the content centring took most of the content out
    cfg = {**json.loads((run / "config.json").read_text()), "content_centring": 0.0}
    content, style = cached_features(run, 120)
    assert np.array_equal(content[0], content[1])  # the edge-map features, computed once for both views
    groups = torch.from_numpy(content_groups(content[0], CONTENT_GROUPS, cfg["seed"]))
    rows = torch.arange(120)
    mi = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        guiding = build_guiding(cfg)
        phase = HeadPhase(guiding, content, style, {**cfg, "w_independence": weight}, torch.device("cpu"),
                          images=load_cache(run / "cache", cfg["img_size"]))
        phase.fit()
        assert phase.groups is None if weight == 0 else torch.equal(phase.groups, groups)
        optimiser = torch.optim.Adam(guiding.heads.parameters(), lr=cfg["lr_heads"])
        gen = torch.Generator().manual_seed(1)
        for _ in range(200):
            loss, logged = phase.losses(torch.randint(120, (64,), generator=gen), gen, None)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        assert ("loss/content_mi" in logged) == (weight > 0)
        phase.groups, phase.n_groups = groups, int(groups.max()) + 1  # the same groups measure both
        with torch.no_grad():
            mi[weight] = [phase.independence(head, rows).item() for head in guiding.heads]
    # measured (the heads start alike with and without the term): each head 0.023 to 0.048 nats lower with it
    # (0.10 to 0.16 against 0.12 to 0.21)
    assert all(with_term < without - 0.015 for with_term, without in zip(mi[1.0], mi[0.0], strict=True))


def test_the_pooled_feature_baseline_of_a_style_run_reads_the_images_not_its_edge_maps(runs):
    name = "k-means efficientnet-lite0 pooled features"
    style, content = (cluster_quality.baselines(runs[key])[name] for key in ("style", "content"))
    # the content run caches the pooled features; the style run's cache holds edge-map features in that slot
    assert style["acc"] == pytest.approx(content["acc"], abs=0.01)
    assert style["nmi"] == pytest.approx(content["nmi"], abs=0.02)


def test_the_crops_tile_the_image_inside_its_margin_and_mirror_onto_each_other():
    for size in (32, 64):
        boxes = crop_boxes(size)
        assert len(boxes) == 8 and len(set(boxes)) == 8
        assert all(0 < top and 0 < left and top + side < size and left + side < size for top, left, side in boxes)
        centre = [(top + side / 2, left + side / 2) for top, left, side in boxes]
        assert (size / 2, size / 2) not in centre  # the middle of the grid is left out
        mirrored = {(top, size - left - side, side) for top, left, side in boxes}
        assert all(abs(a - b) <= 1 for box, other in zip(sorted(mirrored), sorted(boxes), strict=True)
                   for a, b in zip(box, other, strict=True))  # a mirrored image has (nearly) the same crops


def test_crop_moments_are_the_mean_and_covariance_of_every_single_crop(typefaces):
    paths = sorted(typefaces.rglob("*.png"))[::6]  # 20 glyphs
    images = np.stack([np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.BILINEAR)) for p in paths])
    trunk = StyleTrunk(load_backbone("efficientnet-lite0", 32).freeze())
    mean, cov = crop_moments(trunk, images, torch.device("cpu"), batch=7)  # three batches
    with torch.no_grad():
        rows = trunk.crop_statistics(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1)
    rows = rows.flatten(0, 1).double().numpy()
    assert rows.shape == (160, trunk.statistics_dim)
    # batches of 7 and of 20 images: the trunk's float32 sums differ in the last bits
    expected = np.cov(rows, rowvar=False)
    np.testing.assert_allclose(mean.numpy(), rows.mean(0), rtol=1e-4, atol=1e-6 * np.abs(rows).max())
    np.testing.assert_allclose(cov.numpy(), expected, rtol=1e-3, atol=1e-5 * np.abs(expected).max())


def test_the_feature_pass_stores_the_crop_moments_the_descriptor_is_fitted_on(runs, monkeypatch):
    run = runs["style"]
    cfg = json.loads((run / "config.json").read_text())
    images = load_cache(run / "cache", cfg["img_size"])
    stored = cached_crop_moments(run, len(images))
    assert stored is not None and cached_crop_moments(run, len(images) + 1) is None
    guiding = build_guiding(cfg)
    mean, cov = crop_moments(guiding.trunk, images, torch.device("cpu"))  # a second pass over every crop
    np.testing.assert_allclose(stored[0].numpy(), mean.numpy(), rtol=1e-4, atol=1e-6 * mean.abs().max().item())
    np.testing.assert_allclose(stored[1].numpy(), cov.numpy(), rtol=1e-3, atol=1e-5 * cov.abs().max().item())
    # the fit reads the stored moments and passes no crop through the trunk again; it is the run's own fit
    monkeypatch.setattr("i2icurate.engines.heads.crop_moments", lambda *a, **k: pytest.fail("crops read again"))
    phase = HeadPhase(guiding, *cached_features(run, len(images)), cfg, torch.device("cpu"), images=images,
                      crop_moments=stored)
    phase.fit_descriptor()
    saved = load_checkpoint(run / "last.pt")["models"]["E"]
    for name in ("crop_mean", "crop_std", "crop_axes", "crop_offset"):
        torch.testing.assert_close(getattr(guiding, name), saved[name])
    assert (run / CROP_MOMENTS_NPZ).stat().st_size > 0


def separation(desc: np.ndarray, face: np.ndarray) -> float:
    """Mean cosine similarity of descriptors to those of glyphs of the same face minus that to the other face's."""
    z = desc / np.linalg.norm(desc, axis=1, keepdims=True)
    sim = z @ z.T
    same = face[:, None] == face[None, :]
    np.fill_diagonal(same, False)
    return float(sim[same].mean() - sim[face[:, None] != face[None, :]].mean())


def test_what_the_crops_agree_on_tells_the_typeface_better_than_the_whole_glyph(runs):
    run = runs["style"]
    # the two parts as they stand beside each other, before the content centring mixes them
    cfg = {**json.loads((run / "config.json").read_text()), "content_centring": 0.0}
    paths = [row["path"] for row in read_csv(run / "images.csv")]
    face = np.array([p.split("/")[0] for p in paths])
    phase = HeadPhase(build_guiding(cfg), *cached_features(run, len(paths)), cfg, torch.device("cpu"),
                      images=load_cache(run / "cache", cfg["img_size"]))
    phase.fit_descriptor()
    desc = phase.descriptors(0).numpy()
    image, crops = desc[:, : cfg["pca_dim"]], desc[:, cfg["pca_dim"] :]
    assert crops.shape[1] == CROP_DIM

    # measured: 0.147 against 0.131 on these 120 glyphs
    assert separation(crops, face) >= separation(image, face) + 0.01
    # --crop-weight sets the crop part's length against the image part's 1; 0 leaves it out
    assert cfg["crop_weight"] == 0.5
    np.testing.assert_allclose(np.linalg.norm(crops, axis=1) / np.linalg.norm(image, axis=1), 0.5, rtol=1e-4)
    without = HeadPhase(build_guiding({**cfg, "crop_weight": 0.0}), *cached_features(run, len(paths)), cfg,
                        torch.device("cpu"), images=load_cache(run / "cache", cfg["img_size"]))
    without.fit_descriptor()
    alone = without.descriptors(0).numpy()
    assert np.abs(alone[:, cfg["pca_dim"] :]).max() == 0
    np.testing.assert_allclose(alone[:, : cfg["pca_dim"]], image / np.linalg.norm(image, axis=1, keepdims=True),
                               atol=1e-5)


def test_a_style_runs_heads_never_pair_an_image_with_a_mirror(typefaces):
    """A mirrored italic slants the other way, so in a style run the class heads' pairs read only the images as
    decoded: what the mirrored view holds cannot move their loss. A content run still pairs mirrors."""
    from i2icurate.config import resolve
    from i2icurate.data.imageio import decode_to_array
    from i2icurate.data.scan import scan_folder
    from i2icurate.engines.head_agreement import LinearHeads

    files = scan_folder(typefaces).files
    images = np.stack([decode_to_array(typefaces / f, 16, 10**9) for f in files]).astype(np.float32) / 255
    views = torch.from_numpy(np.stack([images, images[:, :, ::-1]]).reshape(2, len(files), -1).copy())
    desc = torch.nn.functional.normalize(views - views[0].mean(0), dim=-1)  # (as decoded, mirrored) per glyph
    other = desc.clone()
    other[1] = desc[0].roll(7, dims=0)  # another image where the mirror was
    idx = torch.arange(0, len(files), 3)
    for domains, views_read in (("style", 1), ("content", 2)):
        cfg = resolve("discover", None, defaults=domain_defaults({"domains": domains}), domains=domains, k=2)
        assert cfg["head_views"] == views_read
        heads = LinearHeads(desc.shape[-1], 2, 2)
        losses = [HeadPhase.on_descriptors(heads, d, {**cfg, "w_independence": 0.0, "w_neighbourhood": 0.0},
                                           torch.device("cpu")).losses(idx, torch.Generator().manual_seed(3), None)[0]
                  for d in (desc, other)]
        assert torch.equal(losses[0], losses[1]) == (domains == "style"), domains


def test_taking_out_the_layout_groups_mean_leaves_the_typeface_and_less_of_the_letter(runs):
    """--content-centring: each glyph's descriptor minus the mean of its layout group (the same letters in both
    faces) tells the faces apart better, and finds the same letter in the other face less often."""
    run = runs["style"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["content_centring"] == 0.75  # DOMAIN_DEFAULTS
    paths = [row["path"] for row in read_csv(run / "images.csv")]
    face = np.array([p.split("/")[0] for p in paths])
    letter = np.array([p.split("/")[1] for p in paths])
    content, style = cached_features(run, len(paths))
    desc, guiding = {}, {}
    w = cfg["content_centring"]
    for weight in (0.0, w):
        guiding[weight] = build_guiding({**cfg, "content_centring": weight})
        phase = HeadPhase(guiding[weight], content, style, cfg, torch.device("cpu"),
                          images=load_cache(run / "cache", cfg["img_size"]))
        phase.fit_descriptor()
        desc[weight] = phase.descriptors(0).numpy()

    def partner_rate(x: np.ndarray) -> float:
        """Share of glyphs whose most similar glyph of the other face is the same letter."""
        sim = x @ x.T
        sim[face[:, None] == face[None, :]] = -np.inf
        return float((letter[sim.argmax(1)] == letter).mean())

    # measured on these 120 glyphs: separation 0.145 against 0.134; the same letter is the most similar glyph of the
    # other face for 62 % of them against 82 %
    assert separation(desc[w], face) >= separation(desc[0.0], face) + 0.006
    assert partner_rate(desc[w]) <= partner_rate(desc[0.0]) - 0.1
    # the groups of the fit are those a glyph is put in later, and the centring is the group's mean taken out
    centred = guiding[w]
    with torch.no_grad():
        layout = torch.from_numpy(np.array(content[0]))
        groups = centred.layout_groups(layout)
        uncentred = torch.from_numpy(desc[0.0])
        means = torch.stack([uncentred[groups == g].mean(0) for g in groups.unique()])
    torch.testing.assert_close(centred.group_means[groups.unique()], means, atol=1e-5, rtol=1e-4)
    expected = torch.nn.functional.normalize(uncentred - w * centred.group_means[groups], dim=1)
    torch.testing.assert_close(torch.from_numpy(desc[w]), expected, atol=1e-5, rtol=1e-4)
