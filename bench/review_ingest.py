"""Ingest speed of `i2icurate review`: how fast `build_dataset` loads 10,000 images into FiftyOne.

INGEST-SPEED BENCHMARK, NOT A MODEL RESULT. The images are the 10,000 real animal-mnist silhouettes written as PNGs,
but the discover run folder around them is fabricated: clusters, confidences, margins, outlier scores, style codes
and UMAP points are deterministic random numbers, so only the timings mean anything. The FiftyOne database is a
private database name (deleted at the end) under a reused folder in the temp dir.

    python bench/review_ingest.py              # 10,000 samples, target >= 2,000 samples/s
    python bench/review_ingest.py --n 2000
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from pathlib import Path

import click
import numpy as np
from rich.console import Console

from i2icurate.data.demo import write_demo_images
from i2icurate.runs import write_csv, write_json


def fabricate_run(images: Path, run: Path, n: int, k: int = 10, style_dim: int = 64, seed: int = 0) -> None:
    """A discover-like run folder over the first `n` images, with deterministic made-up values (see module doc)."""
    paths = sorted(p.relative_to(images).as_posix() for p in images.rglob("*.png"))[:n]
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, 0.3), size=len(paths)).astype(np.float32)
    top2 = np.sort(probs, axis=1)[:, -2:]
    clusters = probs.argmax(1)
    embeddings = rng.normal(size=(len(paths), style_dim)).astype(np.float32)
    points = rng.normal(size=(len(paths), 2)).astype(np.float32)
    outlier = rng.gamma(2.0, 0.5, size=len(paths))
    run.mkdir(parents=True)
    write_json(run / "config.json", {"command": "discover", "source": str(images.resolve()), "k": k,
                                     "style_dim": style_dim, "note": "fabricated for bench/review_ingest.py"})
    write_csv(run / "images.csv", ["index", "path", "sha1", "width", "height", "duplicate_of"],
              [[i, p, "", 28, 28, ""] for i, p in enumerate(paths)])
    write_csv(run / "assignments.csv", ["path", "cluster", "confidence", "margin", "outlier_score", "duplicate_of"],
              [[p, int(clusters[i]), f"{top2[i, 1]:.6f}", f"{top2[i, 1] - top2[i, 0]:.6f}", f"{outlier[i]:.6f}", ""]
               for i, p in enumerate(paths)])
    np.save(run / "embeddings.npy", embeddings)
    np.save(run / "umap.npy", points)


@click.command()
@click.option("--n", type=click.IntRange(1, 10_000), default=10_000, show_default=True, help="Samples to ingest.")
def main(n: int) -> None:
    """Time build_dataset on a fabricated 10,000-image run folder (a fresh dataset, then a re-run)."""
    console = Console()
    with tempfile.TemporaryDirectory(prefix="i2icurate-bench-") as tmp:
        # the database folder outlives `tmp`: mongod may still run (or serve another process) when `tmp` goes
        os.environ.setdefault("FIFTYONE_DATABASE_DIR", str(Path(tempfile.gettempdir()) / "i2icurate-bench-db"))
        os.environ["FIFTYONE_DATABASE_NAME"] = f"i2icurate-bench-{uuid.uuid4().hex[:8]}"
        from i2icurate.curation.dataset import build_dataset
        from i2icurate.curation.fo_env import import_fiftyone

        t0 = time.perf_counter()
        images = write_demo_images(Path(tmp) / "images", "animal-mnist")
        run = Path(tmp) / "runs" / "discover" / "exp1"
        fabricate_run(images, run, n)
        console.print(f"wrote {n} real PNGs and a fabricated run folder in {time.perf_counter() - t0:.1f} s")
        fo = import_fiftyone()  # start the database outside the timing
        quiet = Console(quiet=True)
        mongod = _mongod()
        timings = {}
        for label in ("create", "re-run (nothing changed)"):
            with _clock(mongod) as clock:
                dataset = build_dataset(run, quiet)
            timings[label] = clock
            assert len(dataset) == n
        with _clock(mongod) as clock:
            plain_add_samples(fo, run)
        timings["FiftyOne floor: one plain add_samples"] = clock
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
        for label, clock in timings.items():
            wall, cpu = clock["wall"], clock["cpu"]
            console.print(f"{label}: {n} samples in {wall:.2f} s = [bold]{n / wall:,.0f} samples/s[/] "
                          f"({cpu:.2f} CPU-s in Python + mongod = {n / cpu:,.0f} samples per CPU-second)")
        console.print(f"target >= 2,000 samples/s for build_dataset; machine load {load:.1f} per core while timing"
                      + ("" if mongod else " (mongod not found: CPU-s are Python only)"))
        dataset.delete()


def _mongod():
    """The mongod serving this process (FiftyOne may attach to one another process started), or None."""
    import psutil

    port = int(os.environ.get("FIFTYONE_PRIVATE_DATABASE_PORT", "0"))
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] == "mongod" and any(c.laddr.port == port for c in proc.net_connections("tcp")):
                return proc
        except psutil.Error:
            continue
    return None


@contextlib.contextmanager
def _clock(mongod):
    """Wall seconds and CPU seconds (this process plus mongod) of the block, filled in when it ends."""
    def cpu() -> float:
        own = time.process_time()
        return own + (sum(mongod.cpu_times()[:2]) if mongod is not None else 0.0)

    result: dict[str, float] = {}
    wall0, cpu0 = time.perf_counter(), cpu()
    yield result
    result["wall"], result["cpu"] = time.perf_counter() - wall0, cpu() - cpu0


def plain_add_samples(fo, run: Path) -> None:
    """The same samples and fields through one default `add_samples` call into a scratch dataset (no brain runs,
    no views): what FiftyOne itself needs, for comparison."""
    from i2icurate.curation.dataset import _columns, load_run_tables

    columns = _columns(load_run_tables(run))
    scratch = fo.Dataset()
    samples = [fo.Sample(filepath=path, i2i_path=columns["i2i_path"][i],
                         pseudo_domain=fo.Classification(label=columns["pseudo_domain.label"][i],
                                                         confidence=columns["pseudo_domain.confidence"][i]),
                         margin=columns["margin"][i], outlier_score=columns["outlier_score"][i],
                         duplicate=columns["duplicate"][i], duplicate_of=columns["duplicate_of"][i],
                         embedding=columns["embedding"][i]) for i, path in enumerate(columns["filepath"])]
    scratch.add_samples(samples, progress=False)
    scratch.delete()


if __name__ == "__main__":
    main()
