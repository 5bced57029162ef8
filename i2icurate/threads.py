"""How many CPU threads torch computes with: the cores this process may use, or what the user says.

torch starts one thread per core of the machine. Inside a CPU-limited container (cgroup quota), under a `taskset`
mask, or on a machine where other jobs hold some cores, those threads wait for each other at every operation and a
run can be many times slower than with fewer threads. `threads = 0` (auto) picks:

1. `OMP_NUM_THREADS` when it is set (torchrun sets it to 1 when it starts several processes per machine);
2. otherwise the cores this process may use: its CPU affinity, capped by the cgroup CPU quota (`cpu.max` of its
   cgroup v2 and the parents, or v1 `cpu.cfs_quota_us / cpu.cfs_period_us`), rounded up.

Cores that other processes keep busy (the load average) only produce a hint, so the same machine always computes
with the same number of threads and a resumed run stays exact.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from i2icurate.errors import UserError
from i2icurate.runs import CONFIG_FILE, read_json

CGROUP = Path("/sys/fs/cgroup")


def _own_cgroups(root: Path) -> list[Path]:
    """This process's cgroup v2 folder and its parents up to `root` (just `root` when it cannot be told)."""
    try:
        line = next(x for x in Path("/proc/self/cgroup").read_text().splitlines() if x.startswith("0::"))
        own = root / line[3:].strip().lstrip("/")
    except (OSError, StopIteration):
        return [root]
    return [own, *(p for p in own.parents if p == root or root in p.parents)]


def _cgroup_quota(root: Path = CGROUP) -> float | None:
    """CPU quota in cores (e.g. 1.5) from cgroup v2 `cpu.max` or v1 `cpu.cfs_*`; None when unlimited or unknown."""
    quotas = []
    for folder in _own_cgroups(root):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota != "max":
                quotas.append(int(quota) / int(period))
        except (OSError, ValueError):
            continue
    try:
        v1 = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        if v1 > 0:
            quotas.append(v1 / int((root / "cpu" / "cpu.cfs_period_us").read_text()))
    except (OSError, ValueError):
        pass
    return min(quotas) if quotas else None


def allowed_cores(cgroup_root: Path = CGROUP) -> int:
    """Cores this process may use: its CPU affinity, capped by the cgroup CPU quota (rounded up), at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def busy_cores() -> float:
    """Cores kept busy by other processes: the 1-minute load average (0 where unknown)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


@dataclass(frozen=True)
class ThreadChoice:
    """The number of threads, why, and a hint when other processes seem to hold some of the cores."""

    threads: int
    reason: str
    hint: str = ""


def choose_threads(threads: int = 0, cgroup_root: Path = CGROUP) -> ThreadChoice:
    """`threads` when positive, else `OMP_NUM_THREADS` when set, else the cores this process may use.

    The choice never depends on the machine's load, so a run (and its resume) computes with the same thread count
    on the same machine; a busy machine only adds a hint to lower it.
    """
    allowed = allowed_cores(cgroup_root)
    if threads > 0:
        chosen, reason = threads, "threads option"
    elif (env := os.environ.get("OMP_NUM_THREADS", "").strip()).isdigit() and int(env) > 0:
        chosen, reason = int(env), "OMP_NUM_THREADS"
    else:
        chosen, reason = allowed, "the cores this process may use"
    free = (os.cpu_count() or allowed) - busy_cores()  # a container sees the host's load and cores: compare those
    hint = ""
    if chosen > 1 and free < chosen - 0.5:
        hint = (f"other processes keep {chosen - max(free, 0):.1f} of them busy: if training is slow, "
                f"try --threads {max(1, math.floor(free + 0.5))}")
    return ThreadChoice(chosen, reason, hint)


def requested_threads(options: dict[str, Any], resume: str | Path | None = None) -> int:
    """The threads option of a command: given explicitly, else the resumed run's, else 0 (auto)."""
    value = options.get("threads")
    if value is None and resume is not None:
        try:
            value = read_json(Path(resume) / CONFIG_FILE).get("threads")
        except (OSError, ValueError, AttributeError):
            value = None  # the resume itself reports a missing or broken run folder
    try:
        value = int(value or 0)
    except (TypeError, ValueError):
        raise UserError(f"--threads: expected int, got {value!r}") from None
    if value < 0:
        raise UserError(f"--threads: {value} is below the minimum 0")
    return value


def apply_threads(threads: int | ThreadChoice = 0, console: Console | None = None) -> int:
    """Set torch's intra-op thread count (an explicit choice, or see `choose_threads`), print it, and return it."""
    import torch

    choice = threads if isinstance(threads, ThreadChoice) else choose_threads(int(threads or 0))
    torch.set_num_threads(choice.threads)
    if console is not None:
        console.print(f"CPU threads: {choice.threads} ({choice.reason})", highlight=False)
        if choice.hint:
            console.print(f"[yellow]{choice.hint}[/]", highlight=False)
    return choice.threads
