"""Training speed of the tiny preset against the number of torch threads, with other processes keeping cores busy.

    python bench/threads.py --threads 1,2,0 --busy 1

For each thread count, `i2icurate discover --preset tiny` trains `--iters` iterations on 200 real animal-mnist images
in a fresh process while `--busy` spinning processes hold cores; the median it/s of the guiding-network phase and of
the GAN phase are read from stats.jsonl. `--threads 0` is the automatic choice. Ratios are what carry over between
machines: the figures depend on what else the machine runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from i2icurate.data.demo import write_demo_images

SPIN = "while True: pass"


def run_discover(data: Path, project: Path, threads: int, iters: int, timeout: float) -> dict[str, float]:
    """Train one tiny run with `threads` torch threads; median it/s per phase (from stats.jsonl) and wall time."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    name = f"t{threads}_"
    cmd = [sys.executable, "-m", "i2icurate", "discover", str(data), "--preset", "tiny", "--iters", str(iters),
           "--warmup-frac", "0.5", "--log-every", "2", "--ckpt-every", str(iters), "--sample-every", str(iters),
           "--workers", "1", "--threads", str(threads), "--project", str(project), "--name", name]
    start = time.perf_counter()
    try:
        subprocess.run(cmd, env=env, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pass  # the rates logged so far still count
    wall = time.perf_counter() - start
    stats = project / "discover" / f"{name}1" / "stats.jsonl"
    rows = [json.loads(line) for line in stats.read_text().splitlines()] if stats.is_file() else []
    gan_start = iters // 2
    warm = [r["speed/it_per_s"] for r in rows if 2 < r["step"] <= gan_start]  # the first interval includes set-up
    gan = [r["speed/it_per_s"] for r in rows if r["step"] > gan_start + 2]
    return {"warmup_it_s": statistics.median(warm) if warm else float("nan"),
            "gan_it_s": statistics.median(gan) if gan else float("nan"), "steps": rows[-1]["step"] if rows else 0,
            "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (0 = auto)")
    parser.add_argument("--busy", type=int, default=1, help="spinning processes started beside the run")
    parser.add_argument("--iters", type=int, default=24)
    parser.add_argument("--timeout", type=float, default=240, help="seconds per run (the rates so far still count)")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = write_demo_images(Path(tmp) / "data", "animal-mnist", per_class=20)
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(args.busy)]
        try:
            time.sleep(1)
            results = {t: run_discover(data, Path(tmp) / "runs", t, args.iters, args.timeout)
                       for t in (int(x) for x in args.threads.split(","))}
        finally:
            for proc in spinners:
                proc.kill()
                proc.wait()
    base = results[min(results, key=lambda t: (t != 1, t))]
    print(f"cores: {os.cpu_count()}, affinity {len(os.sched_getaffinity(0))}, busy processes: {args.busy}, "
          f"1-min load average before: {load:.2f}")
    print("| --threads | guiding phase it/s | GAN phase it/s | GAN speed vs first row | iterations done |")
    print("|---|---|---|---|---|")
    for t, r in results.items():
        print(f"| {t} | {r['warmup_it_s']:.2f} | {r['gan_it_s']:.2f} | {r['gan_it_s'] / base['gan_it_s']:.2f}x "
              f"| {r['steps']}/{args.iters} |")


if __name__ == "__main__":
    main()
