"""bench/gpu.py: the dry run of the whole GPU suite on the CPU, and failing or hanging benchmarks being recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import load_bench

REPO = Path(__file__).resolve().parents[1]
suite = load_bench("gpu.py")


def _gpu_py(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One real `python bench/gpu.py OUT --dry-run` (every benchmark, toy sizes, CPU)."""
    out = tmp_path_factory.mktemp("gpu_dry_run")
    return out, _gpu_py(str(out), "--dry-run")


def test_dry_run_produces_every_benchmark_json(dry_run):
    out, done = dry_run
    assert done.returncode == 0, done.stdout + done.stderr
    env = json.loads((out / "env.json").read_text())
    assert env["dry_run"] is True and "torch" in env and env["faiss"]
    for bench in suite.plan(dry_run=True):
        record = json.loads((out / f"{bench.name}.json").read_text())
        assert record["status"] == "ok", (bench.name, record.get("log_tail"))
        assert record["dry_run"] is True and record["result"], bench.name
        assert 0 < record["seconds"] < record["cap_s"]
    assert not (out / "scratch").exists()  # the export work folders are gone

    rows = {name: json.loads((out / f"{name}.json").read_text())["result"]
            for name in ("tunit_eager", "tunit_compiled", "translators")}
    assert [r["row"][:6] for r in rows["tunit_eager"]["rows"]] == ["fp32 (", "+ bf16", "+ chan", "+ fuse"]
    assert [r["row"][:6] for r in rows["tunit_compiled"]["rows"]] == ["+ torc", "+ lazy"]
    assert [(r["model"], r["row"][:4]) for r in rows["translators"]["rows"]] == [
        ("ugatit", "fp32"), ("ugatit", "+ bf"), ("srunit", "fp32"), ("srunit", "+ bf")]
    assert all(r["it_s"] > 0 and r["tflops"] > 0 for result in rows.values() for r in result["rows"])
    for precision in ("fp32", "bf16"):
        cluster = json.loads((out / f"cluster_{precision}.json").read_text())["result"]["mnist-5k"]
        assert cluster["precision"] == precision and cluster["images"] == 100
        ours = next(m for name, m in cluster["methods"].items() if name.startswith("discover"))
        assert 0 <= ours["acc"] <= 1 and ours["backbone"] == "efficientnet-lite0"
    exports = json.loads((out / "export.json").read_text())["result"]
    assert exports["complete"] and [r["images"] for r in exports["exports"]] == [200, 600]
    assert all(r["embed_img_s"] > 0 and r["peak_rss"] > 0 for r in exports["exports"])
    faiss_umap = json.loads((out / "faiss_umap.json").read_text())["result"]["faiss_umap"]
    assert faiss_umap["rows"] == 2000 and faiss_umap["finite"] and faiss_umap["scores_finite"]


def test_dry_run_summary_is_labelled_and_complete(dry_run):
    out, _ = dry_run
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# GPU benchmark suite: DRY RUN")
    headings = [line for line in summary.splitlines() if line.startswith("## ")]
    assert len(headings) == 5 and all("DRY RUN" in h for h in headings)
    assert "No figures" not in summary  # every section has rows
    for bench in suite.plan(dry_run=True):
        assert f"| {bench.name} | {bench.title} | ok |" in summary
    assert "| tunit | 32 | 8 | + lazy R1 every 16 steps |" in summary
    assert "| bf16 | mnist-5k | 100 | 4 | discover (default plan, efficientnet-lite0) |" in summary
    assert "| 600 | 32 |" in summary and "| 2,000 | 128 |" in summary


def test_gpu_and_dry_plans_run_the_same_sequence_within_nine_minutes():
    gpu, dry = suite.plan(dry_run=False), suite.plan(dry_run=True)
    assert [(b.name, b.argv[0]) for b in gpu] == [(b.name, b.argv[0]) for b in dry]
    assert sum(b.cap_s for b in gpu if not b.optional) + suite.ENV_CAP_S <= suite.SUITE_BUDGET_S <= 9 * 60
    assert not any(b.optional for b in dry)  # the dry run checks every benchmark
    assert all("cuda" in b.argv for b in gpu) and all("cpu" in b.argv for b in dry)


def _fake(name: str, code: str, cap_s: float = 30) -> object:
    return suite.Benchmark(name, f"fake {name}", ("-c", code), cap_s, goes_to="nowhere")


WRITE_JSON = "import json, sys; open(sys.argv[-1], 'w').write(json.dumps({'rows': [{'x': 1}], 'complete': %s}))"


def test_failing_and_hanging_benchmarks_are_recorded_and_the_rest_still_run(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    hang = ("import subprocess, sys, time\n"
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
            "time.sleep(120)")
    benchmarks = [
        _fake("crashes", "import sys; print('boom'); sys.exit(3)"),
        _fake("hangs", hang, cap_s=3),
        _fake("partial", WRITE_JSON % "False" + "; import time; time.sleep(120)", cap_s=3),
        _fake("silent", "pass"),
        _fake("works", WRITE_JSON % "True"),
    ]
    start = time.monotonic()
    records = suite.run_suite(benchmarks, tmp_path, dry_run=True, budget_s=120, echo=lambda _: None)
    assert time.monotonic() - start < 60

    assert [r["status"] for r in records] == ["failed", "timeout", "timeout", "failed", "ok"]
    crashed, hung, partial, silent, works = records
    assert crashed["returncode"] == 3 and "boom" in crashed["log_tail"] and crashed["result"] is None
    assert hung["returncode"] is None and "3 s cap" in hung["error"] and hung["seconds"] < 10
    assert partial["result"] == {"rows": [{"x": 1}], "complete": False}  # the rows finished before the kill
    assert silent["error"] == "exited 0 but wrote no JSON"
    assert works["result"]["complete"] is True
    for r in records:  # one JSON per benchmark, as returned
        assert json.loads((tmp_path / f"{r['name']}.json").read_text())["status"] == r["status"]

    grandchild = int(pid_file.read_text())  # the hanging benchmark's own child was killed with it
    for _ in range(50):
        if not Path(f"/proc/{grandchild}").exists() or "Z" in _proc_state(grandchild):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the hanging benchmark's child process survived the time-out")

    summary = suite.write_summary(tmp_path, {"dry_run": True}, records, suite.dt.datetime.now(suite.dt.timezone.utc),
                                  1.0, "python bench/gpu.py x --dry-run").read_text()
    assert "| 3 | partial | fake partial | timeout (1 row kept) |" in summary
    assert "`crashes`: failed, exit code 3" in summary


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_spent_budget_skips_the_remaining_benchmarks(tmp_path):
    records = suite.run_suite([_fake("slow", "import time; time.sleep(120)", cap_s=60), _fake("next", "pass")],
                              tmp_path, dry_run=True, budget_s=2, echo=lambda _: None)
    assert [r["status"] for r in records] == ["timeout", "skipped"]
    assert json.loads((tmp_path / "next.json").read_text())["error"] == "the suite's time budget was spent"


def test_gpu_run_without_cuda_stops_after_recording_the_environment(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = _gpu_py(str(tmp_path), "--only", "faiss_umap")
    assert done.returncode == 1 and "CUDA is not available" in done.stderr
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["cuda_available"] is False and "CUDA is not available" in env["problems"]
    assert (tmp_path / "summary.md").read_text().startswith("# GPU benchmark suite on cpu")
    assert not (tmp_path / "faiss_umap.json").exists()
