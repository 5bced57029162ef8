"""The number of torch threads: from the cores this process may use, or the `threads` option (issue 10, item 5)."""

from __future__ import annotations

import json
import shutil

import torch
from rich.console import Console

from i2icurate.commands.export import export
from i2icurate.config import DISCOVER, TRANSLATE, reject_options_on_resume
from i2icurate.threads import allowed_cores, choose_threads


def test_threads_is_an_option_of_both_training_commands():
    assert DISCOVER["threads"].default == 0 and TRANSLATE["threads"].default == 0
    reject_options_on_resume({"threads": 1, "iters": None})  # may change on --resume: it does not change results


def test_the_run_uses_the_threads_it_was_given(small_run, tmp_path):
    run, printed = small_run
    assert "CPU threads: 1 (threads option)" in printed
    assert printed.index("CPU threads") < printed.index("TUNIT:")
    assert json.loads((run / "config.json").read_text())["threads"] == 1
    # other tests may have changed the process-wide count since: re-exporting applies the run's own, and the whole
    # export (UMAP's numba resets the OpenMP pool) ends with it still in place
    copy = shutil.copytree(run, tmp_path / "copy")
    torch.set_num_threads(2)
    export(copy, console=Console(quiet=True))
    assert torch.get_num_threads() == 1


def test_auto_threads_follow_affinity_cgroup_quota_and_omp(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert allowed_cores(tmp_path) == 6  # no quota file: the affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a 1.5-core container
    assert allowed_cores(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert allowed_cores(tmp_path) == 6
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")  # cgroup v1: 3 cores
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert choose_threads(0, tmp_path).threads == 3
    assert choose_threads(5, tmp_path).threads == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert choose_threads(0, tmp_path).threads == 1
