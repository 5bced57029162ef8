"""Every GPU figure the project owes, from one command (issue 13): a fixed sequence of benchmarks, each in its own
process with its own time cap, within 9 minutes in all on one H100/H200.

    python bench/gpu.py results/            # on the GPU machine (see bench/RESULTS.md, "GPU suite")
    python bench/gpu.py results/ --dry-run  # the same sequence on the CPU at toy sizes (about a CPU minute)

First the environment is checked and recorded (torch build, CUDA, device, bf16, faiss and its GPU support, data
packages, free disk and memory). Then the benchmarks run in the order of `plan()`; each is an existing bench script
called with its own options and `--json-out`, killed with its whole process group when its cap (or what is left of
the suite's budget) runs out. A failure or a time-out is recorded and the next benchmark still runs; scripts that
rewrite their JSON as they go (train_speed, export_scale) keep the rows they finished. The output folder gets:

    env.json              the environment check
    <benchmark>.json      one per benchmark: status, seconds, cap, command, log tail, and the script's own figures
    logs/<benchmark>.log  the script's output
    summary.md            the combined Markdown tables (labelled as a dry run where it is one)

The dry run runs the real umap-learn, with numba's compiled functions cached in one folder shared by the benchmark
processes (NUMBA_CACHE_DIR), and sets TORCHDYNAMO_DISABLE=1, so the torch.compile rows run eagerly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's i2icurate, also when the suite is run without installing it
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_env import environment_problems  # noqa: E402
from gpu_report import write_summary  # noqa: E402

from i2icurate.runs import read_json, write_json  # noqa: E402

SUITE_BUDGET_S = 540  # 9 minutes: the limit for the whole sequence on one H100/H200
DRY_BUDGET_S = 1500  # the dry run's caps only guard against a hang (generous: CI machines may be shared)
ENV_CAP_S = 30
LOG_TAIL_CHARS = 3000


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """One step of the suite: `python ARGV... --json-out FILE [--workdir SCRATCH]`, capped at `cap_s` seconds."""

    name: str
    title: str
    argv: tuple[str, ...]
    cap_s: float
    goes_to: str = ""  # the bench/RESULTS.md section the figure belongs in
    scratch: bool = False  # pass a fresh --workdir, deleted afterwards
    env: tuple[tuple[str, str], ...] = ()
    optional: bool = False  # run on the GPU only when named in --only (the dry run runs every benchmark)


def plan(dry_run: bool) -> list[Benchmark]:
    """The benchmarks in the order they run: GPU sizes, or (dry run) CPU toy sizes with the same options."""
    device = ("--device", "cpu" if dry_run else "cuda")
    if dry_run:
        tunit = ("--preset", "tiny", "--img-size", "32", "--batch-size", "8", "--warmup", "1", "--iters", "2")
        translators = ("--preset", "tiny", "--img-size", "32", "--batch-size", "1", "--warmup", "1", "--iters", "2")
        cluster = ("--per-class", "10", "--batch-size", "16", "--iters", "4", "--warmup-frac", "0.5",
                   "--workers", "1")  # decoding 100 images in spawned processes would cost more than it saves
        exports = ("--preset", "tiny", "--img-size", "32", "--sizes", "200,600")
        faiss_umap = ("--faiss-umap", "2000", "--dim", "128")
        caps = dict.fromkeys(("tunit_eager", "tunit_compiled", "translators", "cluster_fp32", "cluster_bf16",
                              "export", "faiss_umap"), 300)
    else:
        # Caps from the first H200 lease (2026-11-30, bench/RESULTS.md): every process spends 30-50 s on imports,
        # CUDA start-up and cuDNN autotuning before its first timed step; TUNIT's full step runs at about 3.3 it/s
        # at 128 px b32, U-GAT-IT at 5.6 and SRUNIT at 17 it/s at 256 px b1; a 5,000-image export took 55 s.
        tunit = ("--preset", "full", "--img-size", "128", "--batch-size", "32", "--warmup", "5", "--iters", "15")
        translators = ("--preset", "full", "--img-size", "256", "--batch-size", "1", "--warmup", "3", "--iters", "10")
        # Short: a check that bf16 keeps the quality fp32 gets with the default (pretrained trunk, GPU plan at
        # 128 px): 200 head updates and 100 generator iterations, not the plan's full schedule.
        cluster = ("--iters", "300", "--warmup-frac", "0.67")
        # Peak memory and embedding rate at two folder sizes (the 1 M-image range needs a longer lease). Each size
        # runs in a fresh process whose untimed UMAP warm-up compiles pynndescent's numba functions (not all of
        # them are cached on disk): 40-80 s per process.
        exports = ("--preset", "full", "--img-size", "128", "--sizes", "5000,20000")
        # Optional (--only faiss_umap): UMAP is single-threaded with a fixed seed, about 70 s at 200k rows.
        faiss_umap = ("--faiss-umap", "200000", "--dim", "128")
        caps = {"tunit_eager": 75, "tunit_compiled": 95, "translators": 50, "cluster_fp32": 70, "cluster_bf16": 70,
                "export": 150, "faiss_umap": 150}  # 510 s without the optional faiss_umap: SUITE_BUDGET_S - ENV_CAP_S
    train = ("bench/train_speed.py", *device)
    quality = ("bench/cluster_quality.py", "--dataset", "mnist-5k", *cluster, *device)
    no_compile = (("TORCHDYNAMO_DISABLE", "1"),) if dry_run else ()
    steps = [
        Benchmark("tunit_eager", "TUNIT training ladder, eager rows 1-4",
                  (*train, "--models", "tunit", "--rows", "1-4", *tunit), caps["tunit_eager"], "Training speed"),
        Benchmark("tunit_compiled", "TUNIT training ladder, torch.compile rows 5-6",
                  (*train, "--models", "tunit", "--rows", "5-6", *tunit), caps["tunit_compiled"], "Training speed",
                  env=no_compile),
        Benchmark("translators", "U-GAT-IT and SRUNIT training, fp32 and bf16",
                  (*train, "--models", "ugatit,srunit", *translators), caps["translators"], "Training speed"),
        Benchmark("cluster_fp32", "cluster quality, fp32", (*quality, "--precision", "fp32"), caps["cluster_fp32"],
                  "Cluster quality"),
        Benchmark("cluster_bf16", "cluster quality, bf16", (*quality, "--precision", "bf16"), caps["cluster_bf16"],
                  "Cluster quality"),
        Benchmark("export", "export throughput and peak memory by folder size",
                  ("bench/export_scale.py", *exports, *device), caps["export"], "Export at scale", scratch=True),
        Benchmark("faiss_umap", "faiss + UMAP on N x 128", ("bench/export_scale.py", *faiss_umap, *device),
                  caps["faiss_umap"], "Export at scale", scratch=True, optional=not dry_run),
    ]
    return steps


def child_env(dry_run: bool, extra: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
    """The benchmarks' environment: the checkout on PYTHONPATH, and numba's cache shared by the benchmarks."""
    env = dict(os.environ)
    paths = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.setdefault("NUMBA_CACHE_DIR", str(Path(tempfile.gettempdir()) / "i2icurate-numba-cache"))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    if dry_run:
        for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
    env.update(extra)
    return env


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return ""


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_capped(argv: list[str], cap_s: float, log: Path, env: dict[str, str]) -> tuple[str, int | None, float, float]:
    """Run `argv` in its own process group with output to `log`; kill the whole group after `cap_s` seconds.
    Returns ("ok" | "failed" | "timeout", return code or None, wall seconds, CPU seconds of the processes)."""
    start, cpu = time.perf_counter(), _children_cpu_s()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            code = proc.wait(timeout=max(cap_s, 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group: export_scale's own child processes too
            proc.wait()
            return "timeout", None, time.perf_counter() - start, _children_cpu_s() - cpu
    return ("ok" if code == 0 else "failed"), code, time.perf_counter() - start, _children_cpu_s() - cpu


def run_benchmark(bench: Benchmark, out: Path, cap_s: float, dry_run: bool) -> dict[str, Any]:
    """Run one benchmark and write `<out>/<name>.json` with its status and figures; returns that record."""
    logs, scratch = out / "logs", out / "scratch" / bench.name
    logs.mkdir(parents=True, exist_ok=True)
    result_file, log = logs / f"{bench.name}.result.json", logs / f"{bench.name}.log"
    result_file.unlink(missing_ok=True)
    argv = [sys.executable, *bench.argv, "--json-out", str(result_file)]
    if bench.scratch:
        argv += ["--workdir", str(scratch)]
    status, code, seconds, cpu_s = run_capped(argv, cap_s, log, child_env(dry_run, bench.env))
    try:
        result = read_json(result_file)
        result_file.unlink()  # kept in the record below
    except (OSError, ValueError):
        result = None
    error = None
    if status == "ok" and result is None:
        status, error = "failed", "exited 0 but wrote no JSON"
    elif status == "timeout":
        error = f"killed after its {cap_s:.0f} s cap"
    elif status == "failed":
        error = f"exit code {code}"
    shutil.rmtree(scratch, ignore_errors=True)
    record = {"name": bench.name, "title": bench.title, "status": status, "error": error, "dry_run": dry_run,
              "seconds": round(seconds, 2), "cpu_s": round(cpu_s, 2), "cap_s": cap_s, "returncode": code,
              "goes_to": bench.goes_to,
              "command": shlex.join(["python", *bench.argv]), "env": dict(bench.env),
              "log": str(log.relative_to(out)), "log_tail": _tail(log) if status != "ok" else "", "result": result}
    write_json(out / f"{bench.name}.json", record)
    return record


def run_suite(benchmarks: list[Benchmark], out: Path, dry_run: bool, budget_s: float,
              echo: Any = print) -> list[dict[str, Any]]:
    """Run the benchmarks in order, each capped at min(its cap, what is left of `budget_s`); never stops early."""
    deadline = time.monotonic() + budget_s
    records = []
    for bench in benchmarks:
        left = deadline - time.monotonic()
        if left < 1:
            record = {"name": bench.name, "title": bench.title, "status": "skipped", "dry_run": dry_run,
                      "error": "the suite's time budget was spent", "seconds": 0.0, "cap_s": 0,
                      "goes_to": bench.goes_to, "command": shlex.join(["python", *bench.argv]), "result": None}
            write_json(out / f"{bench.name}.json", record)
        else:
            echo(f"[{bench.name}] {bench.title} (cap {min(bench.cap_s, left):.0f} s)")
            record = run_benchmark(bench, out, min(bench.cap_s, left), dry_run)
        echo(f"[{bench.name}] {record['status']} in {record['seconds']:.1f} s"
             + (f": {record['error']}" if record.get("error") else ""))
        records.append(record)
    return records


def record_environment(out: Path, dry_run: bool) -> dict[str, Any]:
    """Check the environment in a fresh process (a broken CUDA install cannot take the suite down) and save it."""
    path = out / "env.json"
    status, *_ = run_capped([sys.executable, str(Path(__file__).resolve().parent / "gpu_env.py"), str(path)],
                            ENV_CAP_S, out / "logs" / "env.log", child_env(dry_run))
    try:
        env = read_json(path)
    except (OSError, ValueError):
        env = {"check": status, "log_tail": _tail(out / "logs" / "env.log")}
    env["dry_run"] = dry_run
    env["problems"] = environment_problems(env, dry_run)
    write_json(path, env)
    return env


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--dry-run", is_flag=True, help="The same sequence on the CPU at toy sizes (about a minute).")
@click.option("--only", default=None, help="Comma-separated benchmark names to run (default: all but the optional "
              "ones, in order).")
@click.option("--budget-s", type=float, default=None,
              help=f"Time for all benchmarks together [default: {SUITE_BUDGET_S} s; dry run {DRY_BUDGET_S} s].")
@click.option("--list", "list_only", is_flag=True, help="Print the plan and exit.")
def main(out: str, dry_run: bool, only: str | None, budget_s: float | None, list_only: bool) -> None:
    """Check the GPU environment, run every GPU benchmark under its cap, write JSON files and summary.md to OUT."""
    benchmarks = plan(dry_run)
    if only:
        names = [n.strip() for n in only.split(",")]
        unknown = sorted(set(names) - {b.name for b in benchmarks})
        if unknown:
            raise click.UsageError(f"unknown benchmark(s) {', '.join(unknown)}; "
                                   f"choose from {', '.join(b.name for b in benchmarks)}")
        benchmarks = [b for b in benchmarks if b.name in names]
    else:
        benchmarks = [b for b in benchmarks if not b.optional]
    if list_only:
        for b in benchmarks:
            click.echo(f"{b.name:15} cap {b.cap_s:>4.0f} s  python {shlex.join(b.argv)}")
        return
    folder = Path(out)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    budget = budget_s or (DRY_BUDGET_S if dry_run else SUITE_BUDGET_S)  # the environment check counts too
    env = record_environment(folder, dry_run)
    for problem in env["problems"]:
        click.echo(f"environment: {problem}", err=True)
    if not dry_run and not env.get("cuda_available"):
        write_summary(folder, env, [], started, time.perf_counter() - t0, _command())
        raise click.ClickException("CUDA is not available: no GPU figure can be measured (see env.json); "
                                   "use --dry-run to check the suite on the CPU")
    records = run_suite(benchmarks, folder, dry_run, budget - (time.perf_counter() - t0))
    shutil.rmtree(folder / "scratch", ignore_errors=True)
    summary = write_summary(folder, env, records, started, time.perf_counter() - t0, _command())
    click.echo(f"wrote {summary}")
    if any(r["status"] != "ok" for r in records):
        sys.exit(1)


def _command() -> str:
    return shlex.join(["python", "bench/gpu.py", *sys.argv[1:]])


if __name__ == "__main__":
    main()
