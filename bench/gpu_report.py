"""The combined Markdown tables of `bench/gpu.py` (summary.md), built from env.json and the benchmarks' records."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REFERENCE_TUNIT_IMG_S = 70.8  # ../shared/ANCHORS.md: the official TUNIT, 128 px, batch 32, one H100 (train_speed.py)
EXPORT_TARGET_IMG_S = 5000  # issue 5: export at 128 px on an H100
GB = 1024**3
DRY_RUN_LABEL = "DRY RUN on the CPU at toy sizes: no figure here is a GPU figure"


def md_table(header: list[str], rows: Iterable[list[Any]]) -> list[str]:
    """A GitHub Markdown table (None shows as a dash)."""
    cells = [[("–" if v is None else str(v)) for v in row] for row in rows]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in cells)]


def _f(value: float | None, spec: str = ".2f") -> str | None:
    return None if value is None else format(value, spec)


def _result(records: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    return (records.get(name) or {}).get("result") or {}


def _status(record: dict[str, Any]) -> str:
    status = record["status"]
    result = record.get("result") or {}
    if status != "ok" and result:
        kept = len(result.get("rows") or result.get("exports") or [])
        status += f" ({kept} row{'s' * (kept != 1)} kept)" if kept else ""
    return status


def training_rows(records: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """One row per measured ladder row of TUNIT, U-GAT-IT and SRUNIT, with the reference and bf16-peak columns."""
    rows = []
    for name in ("tunit_eager", "tunit_compiled", "translators"):
        result = _result(records, name)
        peak = result.get("bf16_peak_tflops")
        for r in result.get("rows", []):
            is_reference = (r["model"], r["img_size"], r["batch"], result.get("preset")) == ("tunit", 128, 32, "full")
            rows.append([r["model"], r["img_size"], r["batch"], r["row"], _f(r["it_s"]), _f(r["img_s"], ".1f"),
                         f"{r['img_s'] / REFERENCE_TUNIT_IMG_S:.2f}×" if is_reference else None,
                         _f(r.get("peak_gib"), ".1f"), _f(r["tflops"], ".3f"),
                         f"{100 * r['tflops'] / peak:.1f} %" if peak else None])
    return rows


def cluster_rows(records: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """ACC / NMI / ARI of TUNIT and the baselines, per precision."""
    rows = []
    for name in ("cluster_fp32", "cluster_bf16"):
        for dataset, res in _result(records, name).items():
            for method, s in res["methods"].items():
                rows.append([res["precision"], dataset, f"{res['images']:,}", f"{res['iters']:,}", method,
                             f"{s['acc']:.3f}", f"{s['nmi']:.3f}", f"{s['ari']:.3f}", s.get("seconds", "")])
    return rows


def export_rows(records: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """Export throughput and peak host memory per folder size."""
    rows = []
    for r in _result(records, "export").get("exports", []):
        target = f"{r['embed_img_s'] / EXPORT_TARGET_IMG_S:.2f}×" if r["img_size"] == 128 else None
        rows.append([f"{r['images']:,}", r["img_size"], f"{r['embed_img_s']:,.0f}", target, _f(r["export"], ".1f"),
                     _f(r["index"], ".1f"), _f(r["outliers"], ".1f"), r["index_type"], _f(r["umap"], ".1f"),
                     f"{r['peak_rss'] / GB:.2f}", f"{r['peak_anon'] / GB:.2f}"])
    return rows


def faiss_umap_rows(records: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """faiss index, k-NN outlier scores and UMAP times on the N x D matrix."""
    r = _result(records, "faiss_umap").get("faiss_umap")
    if not r:
        return []
    return [[f"{r['rows']:,}", r["dim"], r["gpu_faiss"], r["index_type"], _f(r["index"], ".1f"),
             _f(r["outliers"], ".1f"), _f(r["umap"], ".1f"), f"{r['peak_rss'] / GB:.2f}"]]


def _environment_lines(env: dict[str, Any]) -> list[str]:
    faiss = env.get("faiss")
    facts = [
        ("device", env.get("device")), ("GPU memory GiB (free)", f"{env.get('gpu_memory_gib')} "
                                        f"({env.get('gpu_memory_free_gib')})" if env.get("cuda_available") else None),
        ("torch (CUDA build, cuDNN)", f"{env.get('torch')} ({env.get('torch_cuda_build')}, {env.get('cudnn')})"),
        ("CUDA available", env.get("cuda_available")), ("bf16 supported", env.get("bf16_supported")),
        ("faiss (GPU build, GPUs seen)", f"{faiss} ({env.get('faiss_gpu_build')}, {env.get('faiss_gpus')})"
         if faiss else "not installed"),
        ("umap-learn", (env.get("packages") or {}).get("umap-learn")),
        ("python, CPUs", f"{env.get('python')}, {env.get('cpus')}"),
        ("host memory GiB (available)", f"{env.get('host_memtotal_gib')} ({env.get('host_memavailable_gib')})"),
        ("free disk GiB", env.get("disk_free_gib")), ("commit", env.get("git_commit")),
    ]
    return md_table(["environment", "value"], ([k, v] for k, v in facts))


def render(env: dict[str, Any], records: list[dict[str, Any]], started: dt.datetime, seconds: float,
           command: str) -> str:
    """The whole summary.md text."""
    dry = bool(env.get("dry_run"))
    tag = f" ({DRY_RUN_LABEL})" if dry else ""
    title = f"# GPU benchmark suite: {DRY_RUN_LABEL}" if dry else f"# GPU benchmark suite on {env.get('device')}"
    by_name = {r["name"]: r for r in records}
    lines = [title, "", f"{started:%Y-%m-%d %H:%M} UTC, `{command}`, {seconds:.0f} s in all.", ""]
    if dry:
        lines += ["**Dry run**: toy sizes and small networks on the CPU, with "
                  "torch.compile disabled (TORCHDYNAMO_DISABLE=1). It checks that every benchmark runs and reports; "
                  "its figures say nothing about GPU speed.", ""]
    lines += _environment_lines(env) + [""]
    if env.get("problems"):
        lines += ["Environment problems:", "", *(f"- {p}" for p in env["problems"]), ""]
    lines += [f"## Benchmarks{tag}", ""]
    lines += md_table(["#", "benchmark", "what", "status", "s", "CPU s", "cap s", "goes to (bench/RESULTS.md)"],
                      ([i, r["name"], r["title"], _status(r), f"{r['seconds']:.1f}", _f(r.get("cpu_s"), ".1f"),
                        f"{r['cap_s']:.0f}", r.get("goes_to")] for i, r in enumerate(records, 1)))
    failed = [r for r in records if r["status"] != "ok"]
    for r in failed:
        lines += ["", f"`{r['name']}`: {r['status']}, {r.get('error')}; log: `{r.get('log', '-')}`"]
    sections = [
        (f"Training throughput{tag}", ["model", "size", "batch", "optimisation", "it/s", "img/s",
                                       f"vs reference {REFERENCE_TUNIT_IMG_S} img/s", "peak GiB", "TFLOP/s",
                                       "of bf16 peak"], training_rows(by_name)),
        (f"Cluster quality, fp32 vs bf16{tag}", ["precision", "dataset", "images", "iterations", "method", "ACC",
                                                 "NMI", "ARI", "s"], cluster_rows(by_name)),
        (f"Export at scale{tag}", ["images", "px", "embed img/s", f"vs target {EXPORT_TARGET_IMG_S:,}", "export s",
                                   "faiss index s", "outliers s", "index", "UMAP s", "peak RSS GB", "peak anon GB"],
         export_rows(by_name)),
        (f"faiss + UMAP{tag}", ["rows", "dim", "faiss GPU", "index", "index s", "outliers s", "UMAP s",
                                "peak RSS GB"], faiss_umap_rows(by_name)),
    ]
    for heading, header, rows in sections:
        lines += ["", f"## {heading}", ""]
        lines += md_table(header, rows) if rows else ["No figures: see the benchmarks table."]
    return "\n".join(lines) + "\n"


def write_summary(out: Path, env: dict[str, Any], records: list[dict[str, Any]], started: dt.datetime,
                  seconds: float, command: str) -> Path:
    """Write `<out>/summary.md` and return its path."""
    path = out / "summary.md"
    path.write_text(render(env, records, started, seconds, command), encoding="utf-8")
    return path
