"""Translation quality of tunit / ugatit / srunit on a real paired domain pair: OpenMoji colour -> black line-art.

OpenMoji (npm `openmoji@17.0.0`, CC-BY-SA-4.0) draws every emoji twice, in colour and as black line-art, so a
translation colour -> line can be scored against the true line-art of the same emoji, not only by FID. The script

  1. fetches the package with `npm pack` into a cache folder (reused) and rasterises n paired emoji with resvg-py
     onto white: `<data>/colour/<hex>.png` and `<data>/line/<hex>.png`;
  2. runs `discover -k 2` on the mixed folder and prints how well the unsupervised clusters match colour / line;
  3. writes the run's labels.csv so that colour = cluster_0 and line = cluster_1 (source "benchmark", stored exactly
     as a reviewer's corrections are), so every model translates between the true domains;
  4. runs `translate 0 -> 1 --evaluate` for each model and prints FID / KID against the line domain (metrics.json)
     plus paired L1 and SSIM against the ground-truth line-art, next to three non-learned baselines computed in the
     same run: identity (outputs = inputs), greyscale, and the dark outline (luma < 96 -> black, else white);
  5. writes a sample grid: source | each model's output | dark outline | true line-art.

Translation is evaluated on the training images (the usual unpaired-translation protocol); nothing is held out.
Without --preset both commands choose their hardware plans (on a CPU: discover at 32 px, translators at 64 px with
small widths and a time-budgeted iteration count; see i2icurate/translate_plan.py).

    python bench/translation_quality.py --threads 1                                # CPU: the plans, 300 emoji
    python bench/translation_quality.py --n 120 --size 32 --img-size 32 --iters 50  # a quick smoke run
    python bench/translation_quality.py --preset full --n 4000 --size 256 --device cuda       # GPU
    # SRUNIT on 64 px crops of emoji drawn at 128, translated whole, scored (with the baselines) at 64:
    python bench/translation_quality.py --size 128 --img-size 128 --score-size 64 --models srunit \
        --set srunit.crop_size=64 --iters 10100 --threads 1
    # models in parallel processes on one discover run, then one table and grid:
    python bench/translation_quality.py --models tunit,ugatit --project P --json-out a.json
    python bench/translation_quality.py --models srunit --discover-run P/runs/discover/openmoji1 --project P \
        --json-out b.json
    python bench/translation_quality.py --merge a.json,b.json --grid-out grid.png
    # on a machine that cannot take the Inception weights (a GPU lease), then scored here on the copied-back folder:
    python bench/translation_quality.py --preset full --img-size 128 --no-fid --project P --json-out r.json
    python bench/translation_quality.py --rescore r.json --project P_COPY --data EMOJI_FOLDER

Needs npm (for the data, once) and `pip install resvg-py==0.5.0`.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import click
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from rich.console import Console
from rich.table import Table

from i2icurate.commands.discover import discover
from i2icurate.commands.translate import translate
from i2icurate.data.cache import load_cache
from i2icurate.data.domains import LABELS_CSV, LABELS_HEADER
from i2icurate.data.imageio import decode_to_array, resize_square
from i2icurate.engines.loop import Interrupted
from i2icurate.engines.tunit import resolve_device
from i2icurate.errors import UserError
from i2icurate.export.visuals import translation_grid
from i2icurate.metrics.fid import fid_kid
from i2icurate.runs import CONFIG_FILE, read_csv, read_json, write_csv
from i2icurate.translators import base

PACKAGE = "openmoji@17.0.0"
TARBALL = "openmoji-17.0.0.tgz"
DEFAULT_CACHE = Path("~/.cache/i2icurate/openmoji")
COLOUR_SVG, LINE_SVG = "package/color/svg/", "package/black/svg/"  # folders inside the npm tarball
COLOUR, LINE = "colour", "line"
DOMAINS = {COLOUR: 0, LINE: 1}
RESVG_HINT = "rasterising OpenMoji needs resvg-py: pip install resvg-py==0.5.0"
MODELS = ("tunit", "ugatit", "srunit")
# Skin-tone modifiers: the line-art of the five tone variants is the base emoji's, so they are left out.
_SKIN_TONE = re.compile(r"(^|-)1F3F[B-F](-|$)")
_MAX_PIXELS = 10**9


# --------------------------------------------------------------------------------------------------- data


def _npm_reason(output: str, returncode: int) -> str:
    """The informative line of npm's error output (npm prints code, errno, stack and log-file lines too)."""
    errors = [ln.split(None, 2)[-1].strip() for ln in output.splitlines()
              if ln.startswith(("npm error ", "npm ERR! ")) and len(ln.split(None, 2)) == 3]
    noise = ("code ", "syscall ", "errno ", "at ", "A complete log", "Log files", "path ")
    useful = [e for e in errors if not e.startswith(noise)]
    codes = [e for e in errors if e.startswith("code ")]
    return (useful or codes or [f"exit status {returncode}"])[0]


def fetch_openmoji(cache_dir: str | Path = DEFAULT_CACHE) -> Path:
    """The `openmoji@17.0.0` npm tarball in `cache_dir`, fetched with `npm pack` unless it is already there."""
    cache = Path(cache_dir).expanduser()
    tarball = cache / TARBALL
    if tarball.is_file():
        return tarball
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(f"npm not found: install Node.js/npm to fetch {PACKAGE}, or put {TARBALL} in {cache}")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        try:
            result = subprocess.run([npm, "pack", PACKAGE], cwd=tmp, capture_output=True, text=True,
                                    timeout=600)
        except subprocess.TimeoutExpired:
            raise UserError(f"npm pack {PACKAGE} timed out after 10 minutes (is the npm registry reachable?)") from None
        packed = Path(tmp) / TARBALL
        if result.returncode != 0 or not packed.is_file():
            raise UserError(f"npm pack {PACKAGE} failed (is the npm registry reachable?): "
                            f"{_npm_reason(result.stderr or result.stdout, result.returncode)}")
        packed.replace(tarball)
    return tarball


def _svg_members(tar: tarfile.TarFile) -> tuple[dict[str, tarfile.TarInfo], dict[str, tarfile.TarInfo]]:
    colour, line = {}, {}
    for member in tar.getmembers():
        if not member.isfile() or not member.name.endswith(".svg"):
            continue
        folder, name = member.name.rsplit("/", 1)
        target = {COLOUR_SVG: colour, LINE_SVG: line}.get(folder + "/")
        if target is not None:
            target[name[: -len(".svg")]] = member
    return colour, line


def choose_hexcodes(available: list[str], n: int) -> list[str]:
    """n hexcodes spread evenly over the sorted list, skin-tone variants excluded (deterministic).

    Taking the first n sorted codes would be mostly keycaps and flags (the 1F1E6.. regional-indicator pairs).
    """
    pool = sorted(h for h in available if not _SKIN_TONE.search(h))
    if n > len(pool):
        raise UserError(f"--n {n}: only {len(pool)} paired emoji without skin-tone variants in {PACKAGE}")
    if n < 2:
        raise UserError(f"--n {n}: need at least 2 emoji")
    picks = np.unique(np.round(np.linspace(0, len(pool) - 1, n)).astype(int))
    return [pool[i] for i in picks]


def rasterise(svg: str, size: int) -> Image.Image:
    """One SVG rendered with resvg at size x size over a white background, as RGB."""
    try:
        import resvg_py
    except ImportError:
        raise UserError(RESVG_HINT) from None
    png = resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size, background="#ffffff",
                                skip_system_fonts=True)
    img = Image.open(io.BytesIO(png)).convert("RGBA")
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, img).convert("RGB")


def prepare_openmoji(dest: str | Path, n: int, size: int, cache_dir: str | Path = DEFAULT_CACHE) -> list[str]:
    """Write n paired emoji as `dest/colour/<hex>.png` and `dest/line/<hex>.png` (size px); returns the hexcodes."""
    try:
        import resvg_py  # noqa: F401 - fail before the download, with the install hint
    except ImportError:
        raise UserError(RESVG_HINT) from None
    tarball = fetch_openmoji(cache_dir)
    dest = Path(dest)
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            colour, line = _svg_members(tar)
            if not colour or not line:
                raise UserError(f"{tarball} has no {COLOUR_SVG} / {LINE_SVG} folders; delete it to fetch it again")
            chosen = choose_hexcodes(sorted(colour.keys() & line.keys()), n)
            for folder, members in ((COLOUR, colour), (LINE, line)):
                (dest / folder).mkdir(parents=True, exist_ok=True)
                for hexcode in chosen:
                    svg = tar.extractfile(members[hexcode]).read().decode("utf-8")
                    rasterise(svg, size).save(dest / folder / f"{hexcode}.png")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"cannot read {tarball} ({exc}); delete it to fetch it again".replace("\n", " ")) from None
    return chosen


# --------------------------------------------------------------------------------------------------- labels


def write_domain_labels(run: str | Path, folders: dict[str, int], source: str = "benchmark") -> dict[int, int]:
    """Label every image of a discover run by its top-level folder (`folders` maps folder -> cluster id).

    Rows `path,cluster_N,<source>,<time>` are appended to the run's labels.csv after any existing rows, exactly as
    a reviewer's corrections are stored (the newest row per path wins). Images in other folders keep their pseudo
    label. Returns how many images went to each cluster.
    """
    run = Path(run)
    stamp = dt.datetime.now().isoformat(timespec="seconds")
    header = list(LABELS_HEADER)
    old = read_csv(run / LABELS_CSV) if (run / LABELS_CSV).is_file() else []
    new, counts = [], Counter()
    for row in read_csv(run / "assignments.csv"):
        parts = PurePosixPath(row["path"]).parts
        cluster = folders.get(parts[0]) if len(parts) > 1 else None
        if cluster is not None:
            new.append((row["path"], f"cluster_{cluster}", source, stamp))
            counts[cluster] += 1
    write_csv(run / LABELS_CSV, header, [[r.get(c, "") for c in header] for r in old] + new)
    return dict(counts)


# --------------------------------------------------------------------------------------------------- scores


def to_unit(images_u8: np.ndarray) -> np.ndarray:
    """uint8 images -> float64 in [0, 1]."""
    return np.asarray(images_u8, dtype=np.float64) / 255.0


def l1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference per image (N,) of two float image batches (N, H, W, C) in [0, 1]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"need two batches (N, H, W, C) of one shape, got {a.shape} and {b.shape}")
    return np.abs(a - b).reshape(len(a), -1).mean(axis=1)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian of odd length `size`."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(x**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Mean SSIM per image (N,) of two batches (N, H, W, C), averaged over channels and window positions.

    Hand-written (scikit-image is not a dependency), following Wang et al. 2004 and their reference MATLAB code:
    an 11 x 11 Gaussian window with sigma 1.5, local statistics weighted by the window (population variances, as
    `skimage.metrics.structural_similarity(gaussian_weights=True, use_sample_covariance=False)`), C1 = (k1 L)²,
    C2 = (k2 L)², and only positions where the window lies fully inside the image ('valid'). The window shrinks to
    the image's smaller side (made odd) for images under 11 px.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"need two batches (N, H, W, C) of one shape, got {a.shape} and {b.shape}")
    n, h, w, c = a.shape
    size = min(win_size, h, w)
    size -= 1 - size % 2
    g = torch.from_numpy(gaussian_window(size, sigma))
    kernel = (g[:, None] * g[None, :])[None, None]

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel)

    x = torch.from_numpy(a).permute(0, 3, 1, 2).reshape(n * c, 1, h, w)
    y = torch.from_numpy(b).permute(0, 3, 1, 2).reshape(n * c, 1, h, w)
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.reshape(n, -1).mean(dim=1).numpy()


def paired_scores(outputs_u8: np.ndarray, targets_u8: np.ndarray) -> dict[str, float]:
    """Mean L1 (pixel units in [0, 1]) and mean SSIM of outputs against their ground-truth targets."""
    a, b = to_unit(outputs_u8), to_unit(targets_u8)
    return {"l1": float(l1(a, b).mean()), "ssim": float(ssim(a, b).mean())}


def greyscale(images_u8: np.ndarray) -> np.ndarray:
    """Non-learned baseline: the ITU-R 601 luma of each image, as RGB uint8."""
    grey = np.asarray(images_u8, np.float64) @ np.array([0.299, 0.587, 0.114])
    return np.repeat(np.round(grey).astype(np.uint8)[..., None], 3, axis=-1)


def dark_outline(images_u8: np.ndarray, threshold: int = 96) -> np.ndarray:
    """Non-learned baseline: pixels darker than `threshold` (luma) become black, the rest white.

    OpenMoji draws the same black outline in both styles, so this keeps the outline and drops the colour fills: a
    hand-written colour -> line-art translator that knows the task, which a learned model has to discover.
    """
    dark = greyscale(images_u8)[..., 0] < threshold
    return np.repeat(np.where(dark, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


BASELINES = {"identity": lambda x: np.asarray(x), "greyscale": greyscale, "dark outline": dark_outline}
NOT_SCORED = {"fid": None, "kid": None, "kid_std": None}  # --no-fid: filled in later by --rescore


def _line_targets(data: Path, rel_paths: list[str], size: int) -> np.ndarray:
    """The ground-truth line-art of each colour image, decoded and resized like the pipeline's own images."""
    return np.stack([decode_to_array(data / LINE / PurePosixPath(p).name, size, _MAX_PIXELS) for p in rel_paths])


def _outputs(out_dir: Path, rel_paths: list[str], size: int) -> np.ndarray:
    return np.stack([decode_to_array(out_dir / PurePosixPath(p).with_suffix(".png"), size, _MAX_PIXELS)
                     for p in rel_paths])


def shrink(images_u8: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, size, size, 3) by the pipeline's own resize (bicubic, antialiased); as is when S
    is already `size`."""
    if images_u8.shape[1] == size:
        return images_u8
    return np.stack([resize_square(Image.fromarray(x), size) for x in images_u8])


def _train_seconds(folder: Path) -> float | None:
    """Seconds of the training loop: the last stats.jsonl record's time (the loop logs at its final step)."""
    path = folder / "stats.jsonl"
    if not path.is_file():
        return None
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return float(json.loads(lines[-1])["time"]) if lines else None


# --------------------------------------------------------------------------------------------------- pipeline


def _cluster_split(run: Path) -> dict[str, dict[str, int]]:
    """How many images of each true domain each unsupervised cluster got: {cluster: {colour: n, line: n}}."""
    split: dict[str, Counter] = {}
    for row in read_csv(run / "assignments.csv"):
        split.setdefault(row["cluster"], Counter())[PurePosixPath(row["path"]).parts[0]] += 1
    return {k: dict(v) for k, v in sorted(split.items(), key=lambda kv: int(kv[0]))}


def run_benchmark(data: Path, runs: Path, models: list[str], preset: str | None, iters: dict[str, int | None],
                  discover_iters: int | None, img_size: int | None, device: str, seed: int,
                  console: Console, threads: int | None = None, discover_run: Path | None = None,
                  baselines: bool = True, settings: dict[str, dict[str, str]] | None = None,
                  score_size: int | None = None, fid: bool = True) -> dict[str, Any]:
    """discover (or a finished `discover_run`) -> true-domain labels -> translate with each model (`iters` per
    model, None = its plan or preset); returns every figure. `preset` None = the hardware plans of both commands.
    `score_size`: score every output and baseline at this size, resized as the pipeline resizes images (None = at
    each model's own size). `fid` False: FID and KID are left as None for `rescore` on another machine (a GPU
    machine that cannot take the 87 MB Inception weights); the outputs stay in each translate run's folder."""
    started = time.perf_counter()
    run = discover_run or discover(data, k=2, preset=preset, iters=discover_iters, device=device, seed=seed,
                                   project=str(runs), name="openmoji", eval_labels="folders", console=console,
                                   threads=threads)
    summary = read_json(run / "summary.json")
    dcfg = read_json(run / CONFIG_FILE)
    result: dict[str, Any] = {
        "discover": {"run": str(run), "seconds": round(time.perf_counter() - started, 1),
                     "train_seconds": _train_seconds(run), "iters": dcfg["iters"], "batch_size": dcfg["batch_size"],
                     "img_size": dcfg["img_size"], "scores": summary.get("scores"), "split": _cluster_split(run)},
        "labels": {str(k): v for k, v in write_domain_labels(run, DOMAINS).items()},
        "models": {}, "identity": {},
    }
    for model in models:
        started = time.perf_counter()
        folder = translate(0, 1, run=run, model=model, preset=preset, evaluate=fid, device=device, seed=seed,
                           project=str(runs), name=model, console=console, img_size=img_size, threads=threads,
                           iters=iters.get(model) if model != "tunit" else None, **(settings or {}).get(model, {}))
        seconds = time.perf_counter() - started
        cfg = read_json(folder / CONFIG_FILE)
        size = cfg["img_size"]
        scored = score_size or size
        rel = [r["path"] for r in read_csv(folder / "domains.csv") if r["domain"] == "A"]
        targets = _line_targets(data, rel, scored)
        outputs = _outputs(Path(cfg["out"]), rel, scored)
        line_domain = None
        if not fid:
            metrics = NOT_SCORED
        elif scored == size:
            metrics = read_json(folder / "metrics.json")
        else:  # translate --evaluate scored at the training size: score again at the asked one
            line_domain = shrink(np.array(load_cache(folder / "cache_b", size)), scored)
            with console.status(f"{model} at {scored} px"):
                metrics = fid_kid(outputs, line_domain, resolve_device(device))
        train_s = _train_seconds(folder)
        trains = model != "tunit"
        result["models"][model] = {
            "run": str(folder), "img_size": size, "score_size": scored, "seconds": round(seconds, 1),
            "train_seconds": train_s if trains else None,
            "iters": cfg["iters"] if trains else None, "batch_size": cfg["batch_size"] if trains else None,
            "img_per_s": cfg["iters"] * cfg["batch_size"] / train_s if trains and train_s else None,
            "fid": metrics["fid"], "kid": metrics["kid"], "kid_std": metrics["kid_std"],
            **paired_scores(outputs, targets),
        }
        key = str(size) if scored == size else f"{size}->{scored}"
        if baselines and key not in result["identity"]:
            # Non-learned outputs of the colour images vs the target set the model was scored against: made from the
            # images at the model's size, then brought to the scoring size as its outputs were.
            source = np.array(load_cache(folder / "cache_a", size))
            if line_domain is None:
                line_domain = shrink(np.array(load_cache(folder / "cache_b", size)), scored)
            result["identity"][key] = baseline_rows(source, line_domain, targets, size, scored, device, console, fid)
    return result


def baseline_rows(source: np.ndarray, line_domain: np.ndarray, targets: np.ndarray, size: int, scored: int,
                  device: str, console: Console, fid: bool = True) -> dict[str, dict[str, Any]]:
    """Every non-learned baseline of the colour images `source` (at `size` px), brought to the scoring size as the
    models' outputs are and scored against the line domain (FID, KID; None without `fid`) and the true line-art
    `targets` (paired L1, SSIM)."""
    rows = {}
    for name, baseline in BASELINES.items():
        made = shrink(baseline(source), scored)
        scores = NOT_SCORED
        if fid:
            with console.status(f"{name} baseline at {_px({'img_size': size, 'score_size': scored})} px"):
                scores = fid_kid(made, line_domain, resolve_device(device))
        rows[name] = {"img_size": size, "score_size": scored, "fid": scores["fid"], "kid": scores["kid"],
                      "kid_std": scores["kid_std"], **paired_scores(made, targets)}
    return rows


def _rebase(path: str, old_root: str, new_root: Path) -> Path:
    """`path`, written under `old_root` on another machine, under `new_root` here (a path outside `old_root`, such
    as a reused --discover-run, as it was)."""
    try:
        rel = PurePosixPath(path).relative_to(PurePosixPath(old_root))
    except ValueError:
        return Path(path)
    return new_root.joinpath(*rel.parts)


def _decoded(data: Path, rel_paths: list[str], size: int) -> np.ndarray:
    return np.stack([decode_to_array(data / PurePosixPath(p), size, _MAX_PIXELS) for p in rel_paths])


def rescore(result: dict[str, Any], data: Path, root: Path, device: str, console: Console,
            score_size: int | None = None, baselines: bool = True) -> dict[str, Any]:
    """FID, KID, paired L1 and SSIM, here, of a `--no-fid` result made on another machine.

    `root` is that run's `--project` folder as copied back (each translate run's domains.csv, config.json and
    outputs/ at least); `data` is the same paired emoji folder here. Both domains are decoded from `data` at each
    model's size, as translate decodes them into its caches, so the baselines and the line domain match a direct
    run's. Every path in the result is rebased onto `root`."""
    old_root = result["settings"]["project"]
    result["settings"] = {**result["settings"], "data": str(data), "project": str(root),
                          "rescored": {"score_size": score_size, "device": device,
                                       "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes")}}
    result["discover"]["run"] = str(_rebase(result["discover"]["run"], old_root, root))
    identity: dict[str, Any] = {}
    for model, row in result["models"].items():
        folder = _rebase(row["run"], old_root, root)
        size, scored = row["img_size"], score_size or row["img_size"]
        domains = read_csv(folder / "domains.csv")
        rel_a = [r["path"] for r in domains if r["domain"] == "A"]
        line_domain = shrink(_decoded(data, [r["path"] for r in domains if r["domain"] == "B"], size), scored)
        outputs = _outputs(folder / "outputs", rel_a, scored)
        targets = _line_targets(data, rel_a, scored)
        with console.status(f"{model} at {scored} px"):
            metrics = fid_kid(outputs, line_domain, resolve_device(device))
        row.update(run=str(folder), score_size=scored, fid=metrics["fid"], kid=metrics["kid"],
                   kid_std=metrics["kid_std"], **paired_scores(outputs, targets))
        key = str(size) if scored == size else f"{size}->{scored}"
        if baselines and key not in identity:
            identity[key] = baseline_rows(_decoded(data, rel_a, size), line_domain, targets, size, scored, device,
                                          console)
    result["identity"] = identity
    return result


def write_grid(data: Path, result: dict[str, Any], path: Path, rows: int = 8) -> Path:
    """source | each model's output | the dark-outline baseline | true line-art, for `rows` emoji spread over
    the set, at the size the first model was scored at."""
    models = result["models"]
    first = next(iter(models.values()))
    size = first.get("score_size", first["img_size"])
    rel = [r["path"] for r in read_csv(Path(first["run"]) / "domains.csv") if r["domain"] == "A"]
    rel = [rel[i] for i in np.linspace(0, len(rel) - 1, rows).astype(int)]
    sources = np.stack([decode_to_array(data / PurePosixPath(p), size, _MAX_PIXELS) for p in rel])
    made_at = np.stack([decode_to_array(data / PurePosixPath(p), first["img_size"], _MAX_PIXELS) for p in rel])
    columns = [_outputs(_out_dir(Path(m["run"])), rel, size) for m in models.values()]
    columns += [shrink(dark_outline(made_at), size), _line_targets(data, rel, size)]  # the outline as it was scored
    translation_grid(sources, np.stack(columns, axis=1), path, ["source", *models, "outline", "truth"])
    return path


def _out_dir(folder: Path) -> Path:
    """A translate run's outputs: its config's `out`, or `outputs/` in the run folder where that was made on
    another machine (--rescore)."""
    out = Path(read_json(folder / CONFIG_FILE)["out"])
    return out if out.is_dir() else folder / "outputs"


def _px(row: dict[str, Any]) -> str:
    """'64', or '128->64' for a row made at 128 px and scored at 64."""
    scored = row.get("score_size", row["img_size"])
    return str(row["img_size"]) if scored == row["img_size"] else f"{row['img_size']}->{scored}"


def print_results(result: dict[str, Any], console: Console) -> None:
    """The comparison table and the discover summary lines."""
    d = result["discover"]
    scores = d["scores"] or {}
    console.print(f"discover (k=2, {d['iters']} iterations at {d['img_size']} px, batch {d['batch_size']}, "
                  f"{d['train_seconds'] or 0:.0f} s training): unsupervised colour/line "
                  f"ACC {scores.get('acc', 0):.3f}, "
                  f"NMI {scores.get('nmi', 0):.3f}, ARI {scores.get('ari', 0):.3f}; clusters {d['split']}")
    console.print(f"labels.csv: every colour image -> cluster_0, every line image -> cluster_1 ({result['labels']})")
    table = Table(title="OpenMoji colour -> line-art (paired ground truth)")
    for col in ("model", "px", "train s", "total s", "img/s", "FID", "KID×100", "L1", "SSIM"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)

    def fmt(v: float | None, spec: str) -> str:
        return "—" if v is None else format(v, spec)

    for rows in result["identity"].values():
        for name, ident in rows.items():
            table.add_row(name, _px(ident), "—", "—", "—", fmt(ident["fid"], ".1f"),
                          fmt(_percent(ident["kid"]), ".2f"), f"{ident['l1']:.3f}", f"{ident['ssim']:.3f}")
    for model, m in result["models"].items():
        table.add_row(f"{model} ({m['iters'] or 0} it)" if m["iters"] else model, _px(m),
                      fmt(m["train_seconds"], ".1f"), f"{m['seconds']:.1f}", fmt(m["img_per_s"], ".1f"),
                      fmt(m["fid"], ".1f"), fmt(_percent(m["kid"]), ".2f"), f"{m['l1']:.3f}", f"{m['ssim']:.3f}")
    console.print(table)
    console.print("identity = the untranslated colour inputs scored as if they were outputs; greyscale and dark "
                  "outline (luma < 96 -> black, else white) are non-learned translations of them. "
                  "tunit trains nothing here: it is the discover run's generator with the line domain's mean style "
                  "(its training time is the discover line above). total s = caching + training + translating + FID.")


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def parse_iters(text: str | None) -> dict[str, int | None]:
    """--iters: one count for every trained model ('300') or one per model ('ugatit=300,srunit=600')."""
    if not text:
        return {}
    try:
        if "=" not in text:
            return {m: int(text) for m in MODELS}
        return {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(",") if part.strip())}
    except ValueError:
        raise UserError(f"--iters: expected N or model=N,model=N, got {text!r}") from None


def parse_settings(items: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """--set MODEL.OPTION=VALUE (repeatable): options given to that model's translate (translate parses the value)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        model, dot, option = key.partition(".")
        if not (sep and dot and model.strip() and option.strip()):
            raise UserError(f"--set: expected MODEL.OPTION=VALUE, got {item!r}")
        out.setdefault(model.strip(), {})[option.strip().replace("-", "_")] = value.strip()
    return out


def merge_results(paths: list[Path]) -> dict[str, Any]:
    """One result from the JSON files of runs that shared a discover run (models trained in parallel)."""
    results = [json.loads(Path(p).read_text()) for p in paths]
    merged = results[0]
    for other in results[1:]:
        merged["models"].update(other["models"])
        merged["identity"].update(other["identity"])
    return merged


@click.command()
@click.option("--n", "n", type=int, default=300, show_default=True, help="Paired emoji (each drawn in both styles).")
@click.option("--size", type=int, default=64, show_default=True, help="Raster size of the emoji PNGs in pixels.")
@click.option("--preset", default=None, help="Preset of discover and of every translator (default: the hardware "
              "plans, as the commands choose without --preset).")
@click.option("--img-size", type=int, default=None, help="Training size of the translators (default: plan/preset).")
@click.option("--score-size", type=int, default=None, help="Score every output and baseline at this size, resized as "
              "the pipeline resizes (default: each model's own size). E.g. --size 128 --img-size 128 --score-size 64 "
              "scores 64 px translations of emoji drawn at 128.")
@click.option("--iters", default=None, help="Iterations of the trained translators: N, or model=N,model=N "
              "(default: plan/preset).")
@click.option("--discover-iters", type=int, default=None, help="discover iterations (default: plan/preset).")
@click.option("--discover-run", type=click.Path(exists=True, file_okay=False), default=None,
              help="Reuse this finished discover run of an earlier benchmark (its image folder is the data).")
@click.option("--models", default=",".join(MODELS), show_default=True, help="Comma-separated translators.")
@click.option("--device", default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads of discover and each translator.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cache-dir", default=str(DEFAULT_CACHE), show_default=True, help="Where the npm tarball is kept.")
@click.option("--project", default=None, help="Keep the data and runs here (default: a temporary folder).")
@click.option("--json-out", type=click.Path(), default=None, help="Also write the figures as JSON.")
@click.option("--grid-out", type=click.Path(), default=None, help="Write the sample grid here too.")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="Score the non-learned baselines (leave them to one of several parallel processes).")
@click.option("--set", "settings", multiple=True, metavar="MODEL.OPTION=VALUE",
              help="An option of one translator, e.g. ugatit.w_cycle=1 (repeatable).")
@click.option("--fid/--no-fid", "fid", default=True, show_default=True,
              help="Score FID and KID (needs the metrics extra's Inception weights). --no-fid leaves them to "
              "--rescore on another machine; L1, SSIM and the outputs are kept.")
@click.option("--rescore", "rescore_json", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Score, here, the --json-out of a --no-fid run made elsewhere: --project is that run's project "
              "folder as copied back, --data the same emoji folder here; --score-size applies.")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="The paired emoji folder (colour/, line/) of a --rescore.")
@click.option("--merge", default=None, help="Only print the table and grid of these comma-separated --json-out "
              "files (runs on one discover run, e.g. models trained in parallel processes).")
def main(n, size, preset, img_size, score_size, iters, discover_iters, discover_run, models, device, threads, seed,
         cache_dir, project, json_out, grid_out, baselines, settings, fid, rescore_json, data_dir, merge) -> None:
    """Compare the translators on OpenMoji colour -> line-art against the true line-art."""
    console = Console(width=None if sys.stdout.isatty() else 140)
    chosen = [m.strip() for m in models.split(",") if m.strip()]
    try:
        if rescore_json:
            if not (project and data_dir):
                raise UserError("--rescore needs --project (the run's project folder here) and --data")
            data, root = Path(data_dir), Path(project)
            result = rescore(json.loads(Path(rescore_json).read_text()), data, root, device, console, score_size,
                             baselines)
            default_grid = root / "grid.png"
            if json_out:
                Path(json_out).write_text(json.dumps(result, indent=2))
        elif merge:
            result = merge_results([Path(p) for p in merge.split(",")])
            data = Path(result["settings"]["data"])
            default_grid = Path(result["discover"]["run"]).parent.parent / "grid.png"
        else:
            unknown = [m for m in chosen if m not in base.available()]
            if unknown or not chosen:
                raise UserError(f"--models: unknown {', '.join(unknown) or '(none given)'}; "
                                f"choose from {', '.join(base.available())}")
            per_model = parse_iters(iters)
            per_model_options = parse_settings(settings)
            root = Path(project or tempfile.mkdtemp(prefix="translation_quality_"))
            default_grid = root / "grid.png"  # this run's folder, never a reused --discover-run's project
            started = time.perf_counter()
            if discover_run:
                data = Path(read_json(Path(discover_run) / CONFIG_FILE)["source"])
                hexcodes = sorted(p.stem for p in (data / COLOUR).glob("*.png"))
            else:
                data = root / "openmoji"
                if data.exists():
                    if {p.name for p in data.iterdir()} - {COLOUR, LINE}:
                        raise UserError(f"{data} holds more than this script's colour/ and line/ folders; "
                                        "move it away")
                    shutil.rmtree(data)
                with console.status(f"preparing {n} paired OpenMoji emoji at {size} px"):
                    hexcodes = prepare_openmoji(data, n, size, cache_dir)
            console.print(f"{len(hexcodes)} paired emoji at {size} px in {data} "
                          f"({time.perf_counter() - started:.1f} s)")
            result = run_benchmark(data, root / "runs", chosen, preset, per_model, discover_iters, img_size, device,
                                   seed, console, threads, Path(discover_run) if discover_run else None,
                                   baselines, per_model_options, score_size, fid)
            result["settings"] = {
                "n": len(hexcodes), "size": size, "preset": preset, "img_size": img_size, "score_size": score_size,
                "iters": iters,
                "discover_iters": discover_iters, "options": per_model_options, "seed": seed, "package": PACKAGE,
                "threads": threads, "fid": fid, "project": str(root),
                "data": str(data), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="minutes"),
                "device": torch.cuda.get_device_name() if torch.cuda.is_available() and device != "cpu" else "cpu"}
            if json_out:
                Path(json_out).write_text(json.dumps(result, indent=2))
        print_results(result, console)
        if result["models"]:
            grid = write_grid(data, result, Path(grid_out) if grid_out else default_grid)
            console.print(f"sample grid: {grid}")
    except (UserError, Interrupted) as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
