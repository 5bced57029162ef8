"""Export at scale (issue 5): export speed and peak host memory from 10 k to 1 M images, and faiss + UMAP time.

For each size N a synthetic discover run folder is written into a work folder: a uint8 image cache of N
"real-looking" images (animal-mnist and MNIST silhouettes, randomly scaled, rotated, shifted, flipped and tinted,
resampled to --img-size and generated chunk by chunk straight into the cache memmap), an images.csv with synthetic
paths, a config.json and a last.pt holding a randomly initialised TUNIT of the chosen preset. `i2icurate export` then
runs on it in a fresh process, which reports its phase times and peak memory; the run folder is deleted before the
next size (1 M images at 128 px is a 49 GB cache).

    python bench/export_scale.py --img-size 32 --preset tiny --device cpu --sizes 2000,20000,100000,200000
    python bench/export_scale.py --device cpu --faiss-umap 200000
    python bench/export_scale.py --device cuda --sizes 10000,100000,1000000                 # one H100, 128 px
    python bench/export_scale.py --device cuda --faiss-umap 1000000

--faiss-umap N times only the faiss index + k-NN outlier scores + UMAP (sample + transform) on an N x 128 float32
Gaussian mixture (timing figures only: the mixture is not an embedding of real images).

--json-out FILE also writes the figures as JSON, rewritten after every size ("complete": false until the last), so a
run stopped early still leaves the sizes it finished.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from i2icurate.config import resolve
from i2icurate.data.cache import array_file
from i2icurate.data.demo import load_animal_mnist, load_mnist_5k
from i2icurate.engines.checkpoint import LAST, save_checkpoint
from i2icurate.engines.tunit import build_networks, resolve_device
from i2icurate.runs import atomic_path, write_json

GB = 1024**3
CHUNK_PIXELS = 1 << 24  # pixels generated per chunk (1,024 images at 128 px): bounds the generator's memory


# --- synthetic run folder ---------------------------------------------------------------------------------------


@functools.cache
def source_images(device: torch.device) -> torch.Tensor:
    """The 15,000 real 28 px silhouettes (animal-mnist and MNIST-5k) as (M, 1, 28, 28) floats in [0, 1] (loaded
    once per process: MNIST-5k's CSV is slow to parse)."""
    images = np.concatenate([load_animal_mnist()[0], load_mnist_5k()[0]])
    return torch.from_numpy(images).to(device).float().div(255).unsqueeze(1)


def _uniform(gen: torch.Generator, m: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(m, generator=gen, device=gen.device)


def synth_chunk(sources: torch.Tensor, gen: torch.Generator, m: int, size: int) -> np.ndarray:
    """`m` images (m, size, size, 3) uint8: random sources under a random similarity transform, flip and tint."""
    src = sources[torch.randint(len(sources), (m,), generator=gen, device=gen.device)]
    scale, angle = _uniform(gen, m, 0.75, 1.1), _uniform(gen, m, -0.3, 0.3)
    flip = torch.where(torch.rand(m, generator=gen, device=gen.device) < 0.5, -1.0, 1.0)
    shift = _uniform(gen, 2 * m, -0.15, 0.15).view(m, 2)
    cos, sin = scale * torch.cos(angle), scale * torch.sin(angle)
    rows = [torch.stack([flip * cos, -sin, shift[:, 0]], 1), torch.stack([flip * sin, cos, shift[:, 1]], 1)]
    theta = torch.stack(rows, 1)  # (m, 2, 3) output-to-input affine maps
    grid = F.affine_grid(theta, [m, 1, size, size], align_corners=False)
    alpha = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    ramp = torch.linspace(-1, 1, size, device=gen.device).view(1, 1, size, 1)
    colours = torch.rand(m, 9, 1, 1, generator=gen, device=gen.device)
    background = colours[:, 0:3] + 0.25 * (colours[:, 6:9] - 0.5) * ramp  # a soft vertical gradient
    image = background * (1 - alpha) + colours[:, 3:6] * alpha
    image = image + 0.03 * torch.randn(image.shape, generator=gen, device=gen.device)
    return image.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def write_cache(path: Path, n: int, size: int, device: torch.device, seed: int) -> None:
    """The (n, size, size, 3) uint8 cache, generated chunk by chunk into a memmap (bounded memory)."""
    sources = source_images(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    chunk = max(1, CHUNK_PIXELS // (size * size))
    with atomic_path(path) as tmp:
        cache = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            cache[start:stop] = synth_chunk(sources, gen, stop - start, size)
        cache.flush()
        del cache


def write_images_csv(path: Path, n: int) -> None:
    """images.csv with synthetic paths in class-like folders, written row by row."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write("index,path,sha1,width,height,duplicate_of\n")
        for i in range(n):
            f.write(f"{i},synthetic/group_{i % 97:02d}/image_{i:07d}.png,{i:040x},28,28,\n")


def make_run(run: Path, n: int, img_size: int, preset: str, device: str, seed: int) -> None:
    """A discover run folder that `i2icurate export` accepts, with a randomly initialised TUNIT."""
    run.mkdir(parents=True)
    cfg = {"command": "discover", "source": "synthetic", "preset": preset,
           **resolve("discover", preset, img_size=img_size, device=device, seed=seed)}
    write_json(run / "config.json", cfg)
    write_images_csv(run / "images.csv", n)
    torch.manual_seed(seed)
    nets = build_networks(cfg)
    save_checkpoint(run / LAST, {"step": 0, "config": cfg,
                                 "models": {"E_ema": nets["E"].state_dict(), "G_ema": nets["G"].state_dict()}})
    write_cache(array_file(run / "cache", img_size), n, img_size, resolve_device(device), seed)


def evict_from_page_cache(path: Path) -> None:
    """Drop a file's pages from the page cache, so the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def gaussian_mixture(path: Path, n: int, dim: int, seed: int, components: int = 50) -> None:
    """An (n, dim) float32 Gaussian mixture saved as .npy, drawn chunk by chunk into a memmap."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(components, dim)).astype(np.float32)
    with atomic_path(path) as tmp:
        x = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        for start in range(0, n, 65_536):
            stop = min(start + 65_536, n)
            which = rng.integers(components, size=stop - start)
            x[start:stop] = centres[which] + rng.normal(size=(stop - start, dim)).astype(np.float32)
        x.flush()
        del x


# --- measuring inside the child process -------------------------------------------------------------------------


class PeakMemory:
    """Peak resident memory of this process while the `with` block runs, from /proc/self (Linux).

    `peak_rss`: the kernel's high-water mark (VmHWM), reset on entry through /proc/self/clear_refs, so it covers the
    block only (getrusage's ru_maxrss would also count the parent's memory at the fork); file pages the process has
    mapped are included. `peak_anon`: anonymous memory (heap, arrays, pinned buffers), polled every `every` seconds.
    """

    def __init__(self, every: float = 0.02) -> None:
        self.every, self.peak_rss, self.peak_anon, self._stop = every, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._reset = False

    @staticmethod
    def status_bytes(field: str) -> int:
        """One `kB` field of /proc/self/status in bytes (0 where /proc is absent)."""
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.status_bytes("VmRSS"))
        self.peak_anon = max(self.peak_anon, self.status_bytes("RssAnon"))

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.every)

    def __enter__(self) -> PeakMemory:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # "5" resets the peak-RSS counter
            self._reset = True
        except OSError:
            pass
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        if self._reset:
            self.peak_rss = max(self.peak_rss, self.status_bytes("VmHWM"))


def _timed(module: Any, name: str, key: str, times: dict[str, float]) -> None:
    """Replace module.name by a wrapper adding its wall time to times[key]."""
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            times[key] = times.get(key, 0.0) + time.perf_counter() - start

    setattr(module, name, wrapper)


UMAP_EXACT_BELOW = 4096  # umap-learn finds neighbours exactly below this many rows, with pynndescent above


def warm_up_umap(rows: int) -> None:
    """Compile the numba functions a UMAP of `rows` rows will use, before timing: the exact-neighbour path, and
    pynndescent's NN-descent path too from UMAP_EXACT_BELOW rows on (on a fresh numba cache it took ~50 s of a
    5,000-row UMAP on the first GPU lease, bench/RESULTS.md; not all of it is cached on disk)."""
    import umap

    from i2icurate.export.visuals import umap_2d

    rng = np.random.default_rng(0)
    umap_2d(rng.normal(size=(300, 8)).astype(np.float32), seed=0, fit_max_rows=200, sample_rows=100)
    if rows < UMAP_EXACT_BELOW:
        return
    approx = rng.normal(size=(400, 8)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state", as umap_2d silences it
        reducer = umap.UMAP(n_components=2, random_state=0, force_approximation_algorithm=True).fit(approx[:300])
        reducer.transform(approx[300:])


def child_export(run: Path) -> dict[str, Any]:
    """Run `export_run` on `run`, timing its phases (called in a fresh process)."""
    import faiss

    import i2icurate.export.pipeline as pipeline

    with open(run / "images.csv", encoding="utf-8") as rows:
        warm_up_umap(sum(1 for _ in rows) - 1)
    times: dict[str, float] = {}
    for name, key in [("embed_to_npy", "embed"), ("build_index", "index"), ("knn_outlier_scores", "outliers"),
                      ("_write_umap", "umap"), ("write_assignments", "csv")]:
        _timed(pipeline, name, key, times)
    rss_before = PeakMemory.status_bytes("VmRSS")
    with PeakMemory() as memory:
        start = time.perf_counter()
        pipeline.export_run(run, Console(quiet=True))
        times["export"] = time.perf_counter() - start
    ivf = faiss.try_extract_index_ivf(faiss.read_index(str(run / "embeddings.faiss")))
    return {**times, "index_type": "flat" if ivf is None else f"IVF{ivf.nlist}", "rss_before": rss_before,
            "peak_rss": memory.peak_rss, "peak_anon": memory.peak_anon}


def child_faiss_umap(path: Path, seed: int) -> dict[str, Any]:
    """Time faiss index + outlier scores + UMAP on a saved (N, D) float32 matrix (called in a fresh process)."""
    from i2icurate.export import neighbors
    from i2icurate.export.neighbors import build_index, knn_outlier_scores, use_gpu_faiss
    from i2icurate.export.visuals import umap_2d

    x = np.load(path, mmap_mode="r")
    warm_up_umap(len(x))
    out: dict[str, Any] = {"rss_before": PeakMemory.status_bytes("VmRSS"), "gpu_faiss": use_gpu_faiss()}
    with PeakMemory() as memory:
        start = time.perf_counter()
        index = build_index(x, gpu=use_gpu_faiss(), seed=seed)
        out["index"] = time.perf_counter() - start
        start = time.perf_counter()
        scores = knn_outlier_scores(x, index=index)
        out["outliers"] = time.perf_counter() - start
        out["index_type"] = "flat" if len(x) <= neighbors.EXACT_MAX_ROWS else f"IVF{neighbors.ivf_lists(len(x))}"
        del index
        start = time.perf_counter()
        points = umap_2d(x, seed=seed)
        out["umap"] = time.perf_counter() - start
    out.update(peak_rss=memory.peak_rss, peak_anon=memory.peak_anon, finite=bool(np.isfinite(points).all()),
               scores_finite=bool(np.isfinite(scores).all()))
    return out


def in_child(*args: str) -> dict[str, Any]:
    """Run this script's --child mode in a fresh Python process and return the JSON it prints last."""
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"child {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the two modes ----------------------------------------------------------------------------------------------


def _gb(value: float) -> str:
    return f"{value / GB:.2f}"


def _need_disk(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise click.ClickException(f"{folder} has {_gb(free)} GB free but this size needs about {_gb(needed)} GB; "
                                   "use smaller --sizes or --img-size, or another --workdir")


def bench_exports(work: Path, sizes: list[int], img_size: int, preset: str, device: str, seed: int, cold: bool,
                  keep: bool, console: Console,
                  on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Build a run folder per size, export it in a fresh process and print one table row per size; returns the
    rows (phase seconds, embed img/s, memory in bytes), each also passed to `on_row` as soon as it is measured."""
    table = Table(title=f"export at scale: {img_size} px, preset {preset}, device {device}")
    for column in ["images", "cache GB", "generate s", "export s", "embed s", "embed img/s", "faiss index s",
                   "outliers s", "index", "UMAP s", "csv s", "RSS before GB", "peak RSS GB", "peak anon GB"]:
        table.add_column(column, justify="right")
    rows: list[dict[str, Any]] = []
    for n in sizes:
        run = work / f"run_{n}"
        cache_bytes = n * img_size * img_size * 3
        _need_disk(work, int(cache_bytes * 1.05) + n * 1024 + GB // 2)
        start = time.perf_counter()
        make_run(run, n, img_size, preset, device, seed)
        generate = time.perf_counter() - start
        console.print(f"{n:,} images: run folder written in {generate:.1f} s, exporting")
        if cold:
            evict_from_page_cache(array_file(run / "cache", img_size))
        r = in_child("--child", "export", str(run))
        table.add_row(f"{n:,}", _gb(cache_bytes), f"{generate:.1f}", f"{r['export']:.1f}", f"{r['embed']:.1f}",
                      f"{n / r['embed']:,.0f}", f"{r['index']:.1f}", f"{r['outliers']:.1f}", r["index_type"],
                      f"{r['umap']:.1f}", f"{r['csv']:.1f}", _gb(r["rss_before"]), _gb(r["peak_rss"]),
                      _gb(r["peak_anon"]))
        rows.append({"images": n, "img_size": img_size, "preset": preset, "cache_bytes": cache_bytes,
                     "generate": generate, "embed_img_s": n / r["embed"], **r})
        if on_row:
            on_row(rows[-1])
        if not keep:
            shutil.rmtree(run)
    console.print(table)
    return rows


def bench_faiss_umap(work: Path, n: int, dim: int, seed: int, console: Console) -> dict[str, Any]:
    """Time faiss + UMAP on an (n, dim) Gaussian mixture in a fresh process; returns the figures."""
    path = work / f"mixture_{n}x{dim}.npy"
    _need_disk(work, n * dim * 4 + GB // 4)
    gaussian_mixture(path, n, dim, seed)
    r = in_child("--child", "faiss-umap", str(path), "--seed", str(seed))
    table = Table(title=f"faiss + UMAP on {n:,} x {dim} float32 (Gaussian mixture, 50 components)")
    for column in ["rows", "faiss GPU", "index", "index s", "outliers s", "UMAP s", "RSS before GB", "peak RSS GB",
                   "peak anon GB"]:
        table.add_column(column, justify="right")
    table.add_row(f"{n:,}", str(r["gpu_faiss"]), r["index_type"], f"{r['index']:.1f}", f"{r['outliers']:.1f}",
                  f"{r['umap']:.1f}", _gb(r["rss_before"]), _gb(r["peak_rss"]), _gb(r["peak_anon"]))
    console.print(table)
    return {"rows": n, "dim": dim, **r}


def _notes(console: Console, device: str, exports: bool) -> None:
    from i2icurate.export.neighbors import EXACT_MAX_ROWS, IVF_NPROBE
    from i2icurate.export.visuals import UMAP_FIT_MAX_ROWS, UMAP_SAMPLE_ROWS

    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    what = ("Export = the whole `i2icurate export` (embedding, assignments, faiss, UMAP, pictures)" if exports
            else "faiss index + k-NN outlier scores + UMAP on a memory-mapped matrix")
    console.print(
        f"[bold]measuring[/] on {name}. {what}, in a fresh process after a UMAP warm-up (numba compilation is not "
        f"timed). faiss is exact up to {EXACT_MAX_ROWS:,} rows, IVF (nprobe {IVF_NPROBE}) above; UMAP is fitted on all "
        f"rows up to {UMAP_FIT_MAX_ROWS:,}, else on {UMAP_SAMPLE_ROWS:,} sampled rows + transform. 'RSS before' is "
        "the process after imports and warm-up; 'peak RSS' its high-water mark during the timed work (kernel VmHWM, "
        "file pages it maps included: libraries, memmapped arrays); 'peak anon' its polled peak anonymous memory."
        + (" The image cache is read from the page cache unless --cold." if exports else "")
    )


def parse_sizes(text: str) -> list[int]:
    """"10000,100000" -> [10000, 100000], in the order given."""
    return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]


@click.command()
@click.option("--sizes", default="10000,100000,1000000", show_default=True, help="Comma-separated image counts.")
@click.option("--img-size", type=int, default=128, show_default=True)
@click.option("--preset", type=click.Choice(["full", "tiny"]), default="full", show_default=True,
              help="Network widths of the random TUNIT.")
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--faiss-umap", type=int, default=0, help="Instead: time faiss + UMAP on N x --dim float32 rows.")
@click.option("--dim", type=int, default=128, show_default=True, help="Embedding size for --faiss-umap.")
@click.option("--cold", is_flag=True, help="Evict the image cache from the page cache before each export.")
@click.option("--workdir", type=click.Path(file_okay=False), default=None,
              help="Folder to work in (a fresh sub-folder is made there); default: the system temp folder.")
@click.option("--keep", is_flag=True, help="Keep the work sub-folder and the run folders in it.")
@click.option("--json-out", type=click.Path(dir_okay=False), default=None,
              help="Also write the figures as JSON (rewritten after each size).")
@click.option("--child", type=click.Choice(["export", "faiss-umap"]), default=None, hidden=True)
@click.argument("target", required=False, type=click.Path(), default=None)
def main(sizes, img_size, preset, device, seed, faiss_umap, dim, cold, workdir, keep, json_out, child,
         target) -> None:
    """Export throughput and peak memory per image count, or faiss + UMAP time on N x 128 embeddings."""
    if child == "export":
        print(json.dumps(child_export(Path(target))))
        return
    if child == "faiss-umap":
        print(json.dumps(child_faiss_umap(Path(target), seed)))
        return
    console = Console(width=max(160, shutil.get_terminal_size().columns))
    _notes(console, device, exports=not faiss_umap)
    dev = resolve_device(device)
    header = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "seed": seed}

    def save(figures: dict[str, Any], complete: bool) -> None:
        if json_out:
            Path(json_out).write_text(json.dumps({**header, "complete": complete, **figures}, indent=2))

    with work_folder(workdir, keep) as work:
        if faiss_umap:
            save({"faiss_umap": bench_faiss_umap(work, faiss_umap, dim, seed, console)}, complete=True)
        else:
            done: list[dict[str, Any]] = []

            def on_row(row: dict[str, Any]) -> None:
                done.append(row)
                save({"exports": done}, complete=False)

            save({"exports": bench_exports(work, parse_sizes(sizes), img_size, preset, device, seed, cold, keep,
                                           console, on_row)}, complete=True)


@contextlib.contextmanager
def work_folder(parent: str | None, keep: bool) -> Iterator[Path]:
    """A fresh folder under `parent` (default: the system temp folder), removed at the end unless `keep`."""
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="export_scale_", dir=parent))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
