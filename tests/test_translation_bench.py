"""The pure parts of bench/translation_quality.py: SSIM, L1, the emoji choice, the true-domain labels.csv and the
scoring of a result made on another machine."""

from __future__ import annotations

import numpy as np
import pytest

from i2icurate.data.cache import build_cache, load_cache
from i2icurate.data.domains import effective_clusters
from i2icurate.data.imageio import decode_to_array
from i2icurate.data.scan import scan_folder
from i2icurate.runs import read_csv, write_csv, write_json
from tests.conftest import load_bench

bench = load_bench("translation_quality.py")


@pytest.fixture(scope="module")
def real_images(animal_folder) -> np.ndarray:
    """8 real animal silhouettes as a float batch (8, 32, 32, 3) in [0, 1]."""
    files = scan_folder(animal_folder).files[::25][:8]
    return bench.to_unit(np.stack([decode_to_array(animal_folder / f, 32, 10**9) for f in files]))


def _ssim_by_loops(x: np.ndarray, y: np.ndarray, win: int = 11, sigma: float = 1.5) -> float:
    """Reference SSIM of two (H, W) images: every 'valid' window position computed explicitly."""
    g = bench.gaussian_window(win, sigma)
    w = np.outer(g, g)
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - win + 1):
        for j in range(x.shape[1] - win + 1):
            px, py = x[i : i + win, j : j + win], y[i : i + win, j : j + win]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cov = (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_of_identical_images_is_one(real_images):
    np.testing.assert_allclose(bench.ssim(real_images, real_images), 1.0, atol=1e-12)


def test_ssim_of_two_flat_images_has_the_closed_form():
    # No variance anywhere: SSIM reduces to the luminance term (2ab + C1) / (a² + b² + C1).
    a, b = 0.8, 0.3
    x, y = np.full((1, 16, 16, 3), a), np.full((1, 16, 16, 3), b)
    expected = (2 * a * b + 0.01**2) / (a**2 + b**2 + 0.01**2)
    np.testing.assert_allclose(bench.ssim(x, y), [expected], rtol=1e-10)


def test_ssim_matches_an_explicit_window_by_window_computation(real_images):
    x, y = real_images[:2], np.clip(real_images[[1, 0]] * 0.7 + 0.2, 0, 1)  # a different animal, dimmed
    got = bench.ssim(x, y)
    for k in range(2):
        expected = np.mean([_ssim_by_loops(x[k, :, :, c], y[k, :, :, c]) for c in range(3)])
        assert got[k] == pytest.approx(expected, abs=1e-10)
    assert np.all(got < 0.9)
    assert bench.ssim(y, x) == pytest.approx(got, abs=1e-12)  # symmetric


def test_l1_is_the_mean_absolute_pixel_difference(real_images):
    assert np.all(bench.l1(real_images, real_images) == 0)
    white = np.ones_like(real_images)
    np.testing.assert_allclose(bench.l1(real_images, white), (1 - real_images).reshape(8, -1).mean(axis=1))
    scores = bench.paired_scores(np.zeros((2, 12, 12, 3), np.uint8), np.full((2, 12, 12, 3), 51, np.uint8))
    assert scores["l1"] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        bench.l1(real_images, real_images[:, :16])


def test_emoji_choice_is_spread_and_skips_skin_tones():
    codes = [f"1F{i:03X}" for i in range(100)] + ["1F44B-1F3FB", "1F44B-1F3FF", "1F9D1-1F3FD-200D-1F33E"]
    chosen = bench.choose_hexcodes(codes, 5)
    assert chosen == ["1F000", "1F019", "1F032", "1F04A", "1F063"]
    assert bench.choose_hexcodes(list(reversed(codes)), 5) == chosen
    with pytest.raises(bench.UserError):
        bench.choose_hexcodes(codes, 101)


def test_domain_labels_are_stored_like_a_reviewers_corrections(animal_folder, tmp_path):
    # A discover-like run over the real animal folder: every image pseudo-labelled cluster 2.
    paths = scan_folder(animal_folder).files
    write_csv(tmp_path / "assignments.csv", ["path", "cluster", "confidence"], [(p, 2, 1.0) for p in paths])
    write_csv(tmp_path / "labels.csv", ["path", "label", "source", "time"], [(paths[0], "exclude", "human", "t0")])
    counts = bench.write_domain_labels(tmp_path, {"cat": 0, "dog": 1})
    assert counts == {0: 20, 1: 20}
    rows = read_csv(tmp_path / "labels.csv")
    assert rows[0] == {"path": paths[0], "label": "exclude", "source": "human", "time": "t0"}  # history kept
    assert {r["source"] for r in rows[1:]} == {"benchmark"} and len(rows) == 41
    got, clusters = effective_clusters(tmp_path)
    expected = {"cat": 0, "dog": 1}
    for path, cluster in zip(got, clusters, strict=True):
        folder = path.split("/")[0]
        assert cluster == expected.get(folder, -1 if path == paths[0] else 2)


def test_non_learned_baselines_on_real_images(real_images):
    u8 = np.round(real_images * 255).astype(np.uint8)
    grey = bench.greyscale(u8)
    assert grey.shape == u8.shape and grey.dtype == np.uint8
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert np.abs(grey.astype(int) - u8.astype(int)).max() <= 1  # grey silhouettes stay what they are
    outline = bench.dark_outline(u8)
    assert set(np.unique(outline)) <= {0, 255}
    luma = u8.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert ((outline[..., 0] == 0) == (luma < 96)).all()


def test_iterations_per_model():
    assert bench.parse_iters("300") == {m: 300 for m in bench.MODELS}
    assert bench.parse_iters("ugatit=600, srunit=1200") == {"ugatit": 600, "srunit": 1200}
    assert bench.parse_iters(None) == {}
    with pytest.raises(bench.UserError, match="--iters"):
        bench.parse_iters("ugatit=lots")


def test_outputs_scored_at_a_smaller_size_are_shrunk_as_the_pipeline_decodes_files(animal_folder, tmp_path):
    files = scan_folder(animal_folder).files[::40][:4]
    at_64 = np.stack([decode_to_array(animal_folder / f, 64, 10**9) for f in files])
    for i, image in enumerate(at_64):  # 64 px files, as a translator at --img-size 64 writes them
        bench.Image.fromarray(image).save(tmp_path / f"{i}.png")
    expected = np.stack([decode_to_array(tmp_path / f"{i}.png", 32, 10**9) for i in range(len(files))])
    assert np.array_equal(bench.shrink(at_64, 32), expected)  # outputs, baselines and targets: one resize
    assert bench.shrink(at_64, 64) is at_64
    assert bench._px({"img_size": 128, "score_size": 64}) == "128->64" and bench._px({"img_size": 64}) == "64"


def test_a_result_made_elsewhere_is_scored_here_on_the_arrays_a_direct_run_scores(animal_folder, tmp_path,
                                                                                   monkeypatch):
    """--rescore: the GPU machine cannot take the Inception weights, so it writes a --no-fid result and the outputs;
    here FID/KID must see what a direct run's translate caches would hold, and every path is found again."""
    files = scan_folder(animal_folder).files[::25][:6]
    data = tmp_path / "emoji"
    for folder, offset in (("colour", 0), ("line", 3)):  # a real image per name in each domain
        (data / folder).mkdir(parents=True)
        for i in range(3):
            bench.Image.open(animal_folder / files[i + offset]).convert("RGB").save(data / folder / f"{i}.png")
    root = tmp_path / "copied_back"
    run = root / "runs" / "translate" / "ugatit1"
    (run / "outputs" / "colour").mkdir(parents=True)
    rel_a = [f"colour/{i}.png" for i in range(3)]
    rel_b = [f"line/{i}.png" for i in range(3)]
    write_csv(run / "domains.csv", ["path", "domain"], [(p, "A") for p in rel_a] + [(p, "B") for p in rel_b])
    outputs = np.stack([decode_to_array(animal_folder / f, 32, 10**9) for f in files[3:]])[:, ::-1]  # made there
    for rel, image in zip(rel_a, outputs, strict=True):
        bench.Image.fromarray(np.ascontiguousarray(image)).save(run / "outputs" / rel)
    write_json(run / "config.json", {"out": "/gpu/proj/runs/translate/ugatit1/outputs"})
    made_elsewhere = {
        "settings": {"project": "/gpu/proj", "data": "/gpu/repo/emoji", "fid": False},
        "discover": {"run": "/gpu/repo/runs/discover/openmoji1"},
        "models": {"ugatit": {"run": "/gpu/proj/runs/translate/ugatit1", "img_size": 32, "score_size": 32,
                              "fid": None, "kid": None, "kid_std": None, "l1": 0.0, "ssim": 0.0}},
        "identity": {},
    }
    seen = []

    def fid_kid(images, reference, device):
        seen.append((np.array(images), np.array(reference)))
        return {"fid": 1.0 + len(seen), "kid": 0.01 * len(seen), "kid_std": 0.0}

    monkeypatch.setattr(bench, "fid_kid", fid_kid)
    result = bench.rescore(made_elsewhere, data, root, "cpu", bench.Console(quiet=True))

    caches = {d: load_cache(build_cache(data, rel, 32, tmp_path / f"cache_{d}", 1, 10**9), 32)
              for d, rel in (("a", rel_a), ("b", rel_b))}  # what translate decodes the two domains into
    written = np.stack([decode_to_array(run / "outputs" / rel, 32, 10**9) for rel in rel_a])
    assert len(seen) == 4  # the model, then identity, greyscale and the dark outline
    assert all(np.array_equal(reference, caches["b"]) for _, reference in seen)
    assert np.array_equal(seen[0][0], written)
    assert np.array_equal(seen[1][0], caches["a"]) and np.array_equal(seen[2][0], bench.greyscale(caches["a"]))
    row = result["models"]["ugatit"]
    targets = np.stack([decode_to_array(data / rel, 32, 10**9) for rel in rel_b])  # the true line-art, by name
    assert row["fid"] == 2.0 and row["kid"] == 0.01
    assert row["l1"] == pytest.approx(bench.paired_scores(written, targets)["l1"])
    assert result["identity"]["32"]["identity"]["l1"] == pytest.approx(bench.paired_scores(caches["a"], targets)["l1"])
    assert row["run"] == str(run) and result["discover"]["run"] == "/gpu/repo/runs/discover/openmoji1"
    assert bench._out_dir(run) == run / "outputs"  # the grid reads the outputs copied back
