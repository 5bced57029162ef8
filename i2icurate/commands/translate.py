"""`i2icurate translate --from A --to B`: turn images of one discovered domain into the style of another.

Domain A and B are clusters of a discover run (human labels from `sync` win over pseudo labels). The chosen model
trains on the two domains in its own run folder `runs/translate/<name>N/` (TUNIT needs no training), then every
domain-A image, or every image under --input, is translated and written under the output folder with its source's
relative path as a PNG.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.console import Console

from i2icurate import __version__
from i2icurate.commands.discover import check_batch_split, check_source, default_workers
from i2icurate.config import TRANSLATE, reject_options_on_resume, resolve_table
from i2icurate.data.augment import from_signed_u8
from i2icurate.data.cache import build_cache, load_cache
from i2icurate.data.domains import domain_paths, parse_cluster
from i2icurate.data.imageio import spread_indices
from i2icurate.data.scan import scan_folder
from i2icurate.deps import require_metrics
from i2icurate.engines.checkpoint import LAST, load_checkpoint
from i2icurate.engines.distributed import init_distributed, run_on_main_and_share, shutdown
from i2icurate.engines.loop import train_run
from i2icurate.engines.tunit import resolve_device
from i2icurate.errors import UserError
from i2icurate.export.pipeline import IMAGES_CSV
from i2icurate.export.visuals import translation_grid
from i2icurate.markup import bold, escape
from i2icurate.runs import (
    CONFIG_FILE,
    atomic_path,
    latest_run,
    new_run_dir,
    open_finished_run,
    open_run,
    read_csv,
    read_json,
    write_csv,
    write_json,
)
from i2icurate.threads import apply_threads, choose_threads, requested_threads
from i2icurate.translate_plan import (
    describe_translate_plan,
    time_steps,
    timed_schedule,
    translate_plan,
    wants_timing,
)
from i2icurate.translators import base

GRID_ROWS = 8


def model_options() -> dict[str, dict[str, Any]]:
    """Every translator's own options, by model name (for the CLI flags and for 'belongs to' errors)."""
    return {name: {o.name: o for o in base.load(name).OPTIONS} for name in base.available()}


def resolve_translate(model: str, preset: str | None, overrides: dict[str, Any],
                      run_cfg: dict[str, Any] | None = None, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """Shared translate options + the model's own; model defaults, then the hardware `plan` (translate_plan.py),
    then the preset, then explicit values."""
    module = base.load(model)
    table = {**TRANSLATE, **{o.name: o for o in module.OPTIONS}}
    owners = {name: m for m, opts in model_options().items() for name in opts if name not in table}
    defaults = dict(module.DEFAULTS)
    if run_cfg is not None and hasattr(module, "defaults_from_run"):
        defaults.update(module.defaults_from_run(run_cfg))
    defaults.update(plan or {})
    return resolve_table(model, table, module.PRESETS, preset, overrides, defaults, owners)


def _cache_domain(root: Path, paths: list[str], size: int, cache_dir: Path, cfg: dict,
                  console: Console) -> tuple[np.ndarray, list[str]]:
    """Decode `paths` under `root` once into a uint8 cache at `size`; returns it with the paths that decoded."""
    with console.status(f"decoding {len(paths)} images into {cache_dir.name}"):
        result = build_cache(root, paths, size, cache_dir, default_workers(cfg["workers"]), cfg["max_pixels"])
    for skip in result.skipped:
        console.print(f"  skipped {skip.path}: {skip.reason}", highlight=False, markup=False)
    return load_cache(cache_dir, size), result.paths


def typical_side(discover_run: Path) -> int | None:
    """The median shorter side, in pixels, of the images a discover run read (images.csv); None where it did not
    record sizes."""
    path = discover_run / IMAGES_CSV
    if not path.exists():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        sides = [min(int(row["width"]), int(row["height"])) for row in csv.DictReader(f)
                 if row.get("width") and row.get("height")]
    return int(np.median(sides)) if sides else None


def _check_batch_split(model: str, batch_size: int, world: int) -> None:
    if base.load(model).TRAINS:  # the instant TUNIT translator trains nothing, so any batch size will do
        check_batch_split(batch_size, world)


def _start(from_: str, to: str, run: str | None, model: str, input_dir: str | None, out: str | None,
           preset: str | None, options: dict[str, Any], world: int = 1,
           threads: int = 1) -> tuple[Path, dict[str, Any]]:
    project = options.get("project") or TRANSLATE["project"].default
    discover_run = open_finished_run(run) if run is not None else latest_run(project, "discover")
    run_cfg = read_json(discover_run / CONFIG_FILE)
    plan = None
    if preset is None:  # the default: a schedule that fits the device
        plan = translate_plan(base.load(model), resolve_device(options.get("device") or "auto"), threads,
                              options.get("minutes"), typical_side(discover_run), options)
    cfg = resolve_translate(model, preset, options, run_cfg, plan)
    _check_batch_split(model, cfg["batch_size"], world)
    a, b = parse_cluster(from_), parse_cluster(to)
    if a == b:
        raise UserError(f"--from and --to are the same cluster ({a})")
    paths_a = domain_paths(discover_run, a, run_cfg["k"], cfg["min_confidence"])
    paths_b = domain_paths(discover_run, b, run_cfg["k"], cfg["min_confidence"])
    source = check_source(run_cfg["source"], cfg["project"])  # also refuses a --project inside the image folder
    if input_dir is not None:
        check_source(input_dir, cfg["project"])
    if out:  # the default, <run>/outputs, is under --project, which check_source keeps out of the input folders
        out_dir = Path(out).expanduser().resolve()
        for protected in {source, Path(input_dir).resolve() if input_dir else source}:
            if out_dir == protected or protected in out_dir.parents:
                raise UserError(f"--out {out_dir} is inside the input folder {protected}; outputs never go there")
    folder = new_run_dir(cfg["project"], "translate", cfg["name"])
    out_dir = Path(out).expanduser().resolve() if out else (folder / "outputs").resolve()
    meta = {"command": "translate", "model": model, "preset": preset, "from": a, "to": b,
            "discover_run": str(discover_run.resolve()), "source": str(source), "input": input_dir,
            "out": str(out_dir), "version": __version__, "created": dt.datetime.now().isoformat(timespec="seconds"),
            "domain_a_images": len(paths_a), "domain_b_images": len(paths_b)}
    cfg = {**meta, **cfg}
    write_json(folder / CONFIG_FILE, cfg)
    write_csv(folder / "domains.csv", ["path", "domain"], [(p, "A") for p in paths_a] + [(p, "B") for p in paths_b])
    return folder, cfg


def grid_rows(n: int) -> np.ndarray:
    """The indices of the images `grid.png` shows: GRID_ROWS spread over all n (the paths are sorted, so the first
    few would all come from one subfolder)."""
    return spread_indices(n, GRID_ROWS)


def _write_outputs(translator: Any, images: np.ndarray, rel_paths: list[str], out_dir: Path, device: torch.device,
                   rows: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Translate every image, write `<out>/<relative path>.png` atomically; return the outputs of images `rows`
    (for the grid)."""
    wanted, shown = set(rows.tolist()), {}
    for start in range(0, len(images), batch_size):
        u8 = torch.from_numpy(np.array(images[start : start + batch_size])).to(device)
        x = u8.permute(0, 3, 1, 2).float() / 127.5 - 1
        result = from_signed_u8(translator.translate(x)).cpu().numpy()
        for rel, arr in zip(rel_paths[start : start + batch_size], result, strict=True):
            target = out_dir / PurePosixPath(rel).with_suffix(".png")
            with atomic_path(target) as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
        shown.update({i: result[i - start] for i in range(start, start + len(result)) if i in wanted})
    return np.stack([shown[i] for i in rows.tolist()])


def _setup(from_: str | int | None, to: str | int | None, run: str | Path | None, model: str,
           input_dir: str | Path | None, out: str | Path | None, preset: str | None, resume: str | Path | None,
           options: dict[str, Any], console: Console, world: int,
           threads: int = 1) -> tuple[Path, dict[str, Any], list[str]]:
    """Create (or reopen) the run and decode both domains: rank 0's part before training starts."""
    if resume is not None:
        reject_options_on_resume(options)
        folder = open_run(resume)
        cfg = read_json(folder / CONFIG_FILE)
        if options.get("threads") is not None:  # how many cores to use may change; what is computed may not
            cfg["threads"] = options["threads"]
            write_json(folder / CONFIG_FILE, cfg)
        _check_batch_split(cfg["model"], cfg["batch_size"], world)
    else:
        if from_ is None or to is None:
            raise UserError("give --from and --to (cluster ids of the discover run), or --resume RUN")
        folder, cfg = _start(str(from_), str(to), None if run is None else str(run), model,
                             None if input_dir is None else str(input_dir), None if out is None else str(out),
                             preset, options, world, threads)
    console.print(f"run folder: {bold(folder)}  ({cfg['model']}: cluster {cfg['from']} -> cluster {cfg['to']}, "
                  f"{cfg['domain_a_images']} and {cfg['domain_b_images']} images)")
    source = Path(cfg["source"])
    domains: dict[str, list[str]] = {"A": [], "B": []}
    for row in read_csv(folder / "domains.csv"):
        domains[row["domain"]].append(row["path"])
    _, paths_a = _cache_domain(source, domains["A"], cfg["img_size"], folder / "cache_a", cfg, console)
    _cache_domain(source, domains["B"], cfg["img_size"], folder / "cache_b", cfg, console)
    return folder, cfg, paths_a


def _time_on_this_machine(folder: Path, cfg: dict[str, Any], options: dict[str, Any], module: Any,
                          domain_a: np.ndarray, domain_b: np.ndarray, device: torch.device,
                          console: Console) -> dict[str, Any]:
    """Fit the run's iterations to --minutes from a few steps of a throwaway model timed here; saved to the config
    before training starts, so the run trains (and resumes with) exactly that count."""
    with console.status("timing a few training steps on this machine"):
        torch.manual_seed(cfg["seed"])
        step_s = time_steps(module.Translator(cfg, domain_a, domain_b, device), device)
    cfg = {**cfg, **timed_schedule(step_s, cfg["minutes"], options)}
    write_json(folder / CONFIG_FILE, cfg)
    return cfg


def translate(
    from_: str | int | None = None,
    to: str | int | None = None,
    *,
    run: str | Path | None = None,
    model: str = "tunit",
    input_dir: str | Path | None = None,
    out: str | Path | None = None,
    evaluate: bool = False,
    preset: str | None = None,
    resume: str | Path | None = None,
    console: Console | None = None,
    **options: Any,
) -> Path:
    """Train (unless the model is TUNIT) and translate domain A (or `input_dir`) to domain B; returns the run.

    Under `torchrun --nproc_per_node N -m i2icurate translate ...` every process trains on its share of each
    batch (gradients averaged across processes); rank 0 prepares the run and writes the outputs.
    """
    if evaluate:
        require_metrics()  # FID/KID need the metrics extra: say so now, not after the training
    dist, device_name = init_distributed(options.get("device") or "auto")
    console = console or Console()
    if not dist.is_main:
        console = Console(quiet=True)
    threads = choose_threads(requested_threads(options, resume))  # chosen before decoding loads the CPU
    try:
        folder, cfg, paths_a = run_on_main_and_share(dist, lambda: _setup(
            from_, to, run, model, input_dir, out, preset, resume, options, console, dist.world, threads.threads))
        apply_threads(threads, console)
        module = base.load(cfg["model"])
        size = cfg["img_size"]
        device = resolve_device(device_name if dist.enabled else cfg["device"])
        domain_a, domain_b = load_cache(folder / "cache_a", size), load_cache(folder / "cache_b", size)
        if resume is None and wants_timing(options, preset, device, module, dist.enabled):
            cfg = _time_on_this_machine(folder, cfg, options, module, domain_a, domain_b, device, console)
        console.print(describe_translate_plan(cfg["model"], cfg, device, threads.threads, module), highlight=False,
                      markup=False)
        torch.manual_seed(cfg["seed"])
        translator = module.Translator(cfg, domain_a, domain_b, device, dist=dist)
        if (folder / LAST).is_file():
            translator.load_state_dict(load_checkpoint(folder / LAST))
            console.print(f"resuming from iteration {translator.step_count}")
        if module.TRAINS:
            train_run(translator, folder, cfg, console, cfg["model"], f"i2icurate translate --resume {folder}", dist)
    finally:
        shutdown(dist)
    if not dist.is_main:
        return folder

    if cfg.get("input"):
        in_root = Path(cfg["input"]).resolve()
        images, rel_paths = _cache_domain(in_root, scan_folder(in_root).files, size, folder / "cache_input", cfg,
                                          console)
    else:
        images, rel_paths = domain_a, paths_a
    out_dir = Path(cfg["out"])
    rows = grid_rows(len(images))
    with console.status(f"translating {len(images)} images"):
        shown = _write_outputs(translator, images, rel_paths, out_dir, device, rows)
    n = len(shown)
    columns, labels = shown[:, None], ["source", f"cluster {cfg['to']}"]
    if evaluate and len(domain_b):  # beside the translations, real images of the target domain (not paired)
        examples = np.array(domain_b[np.linspace(0, len(domain_b) - 1, n).astype(int)])
        columns, labels = np.stack([shown, examples], axis=1), [*labels, "target examples"]
    translation_grid(np.array(images[rows]), columns, folder / "grid.png", labels)
    console.print(f"wrote {len(images)} translated images to {bold(out_dir)}, "
                  f"side by side in {escape(folder / 'grid.png')}")
    if evaluate:
        from i2icurate.metrics.translation import evaluate_outputs

        evaluate_outputs(folder, out_dir, rel_paths, domain_b, size, device, console)
    return folder
