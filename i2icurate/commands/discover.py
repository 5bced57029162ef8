"""`i2icurate discover`: scan a folder, decode it once, train TUNIT, and export clusters, embeddings and pictures."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from i2icurate import __version__
from i2icurate.commands.auto_k import sweep_k
from i2icurate.commands.preflight import check_candidates, check_k, discard_on_failure, discard_unstarted, warn_k
from i2icurate.config import (
    AUTO,
    CONTENT,
    SCRATCH_K,
    STYLE,
    domain_defaults,
    reject_options_on_resume,
    resolve,
    run_domains,
)
from i2icurate.curation.changes import anchor_targets, parent_assignments, touched_clusters
from i2icurate.data.cache import CacheResult, build_cache, load_cache
from i2icurate.data.domains import EXCLUDE, LABELS_CSV, NEW_CLUSTER, parse_cluster, read_labels
from i2icurate.data.imageio import median_side
from i2icurate.data.scan import ScanResult, scan_folder
from i2icurate.deps import report_optional
from i2icurate.engines.checkpoint import LAST, load_checkpoint
from i2icurate.engines.distributed import init_distributed, run_on_main_and_share, shutdown
from i2icurate.engines.features import (
    CONTENT_NPY,
    CROP_MOMENTS_NPZ,
    FEATURES_FORMAT,
    STYLE_NPY,
    cached_crop_moments,
    cached_features,
    run_features,
)
from i2icurate.engines.heads import HeadPhase
from i2icurate.engines.loop import train_run
from i2icurate.engines.tunit import (
    TunitTrainer,
    autocast_dtype,
    build_guiding,
    resolve_device,
    uses_pretrained_trunk,
)
from i2icurate.errors import UserError
from i2icurate.export.pipeline import IMAGES_CSV, export_run
from i2icurate.markup import bold, escape
from i2icurate.models.backbones import SCRATCH, load_backbone
from i2icurate.plan import describe_plan, fit_plan_to_iters, hardware_plan, style_trunk_size
from i2icurate.runs import (
    CONFIG_FILE,
    atomic_path,
    new_run_dir,
    open_run,
    read_csv,
    read_json,
    write_bytes,
    write_csv,
    write_json,
)
from i2icurate.threads import apply_threads, choose_threads, requested_threads

META_KEYS = ("command", "source", "preset", "version", "created", "resumed", "lineage", "k_auto")
# Options that fix the networks' shapes: a run started --from another one reuses them unless given explicitly.
ARCHITECTURE = ("k", "img_size", "style_dim", "e_width", "g_width", "d_width", "d_max_width", "mlp_width", "backbone",
                "backbone_size", "heads", "pca_dim", "style_weight", "domains", "crop_weight",
                "content_centring")
# what a run made before an option existed used
BEFORE_OPTION = {"backbone": SCRATCH, "domains": CONTENT, "content_centring": 0.0}


def default_workers(workers: int) -> int:
    """0 means one decoding process per CPU core, at most 8."""
    return workers if workers > 0 else min(8, os.cpu_count() or 1)


def check_source(source: str | Path, project: str | Path) -> Path:
    """The image folder as an absolute path; refuse a run folder that would land inside it."""
    root = Path(source).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"image folder not found: {source}" if not root.exists() else f"not a folder: {source}")
    runs = Path(project).expanduser().resolve()
    if runs == root or root in runs.parents:
        raise UserError(f"--project {project} is inside the image folder {root}; choose a run location outside it")
    return root


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console,
    )


def prepare_images(root: Path, run: Path, cfg: dict[str, Any], console: Console,
                   scan: ScanResult | None = None) -> CacheResult:
    """Scan (unless `scan` is given) and decode the folder into the run's cache; write images.csv and skipped.csv."""
    scan = scan or scan_folder(root)
    with _progress(console) as progress:
        task = progress.add_task("decoding images", total=len(scan.files))
        cache = build_cache(
            root, scan.files, cfg["img_size"], run / "cache", default_workers(cfg["workers"]), cfg["max_pixels"],
            progress=lambda done, total: progress.update(task, completed=done),
        )
    skipped = scan.skipped + cache.skipped
    write_csv(run / "skipped.csv", ["path", "reason"], ((s.path, s.reason) for s in skipped))
    write_csv(
        run / IMAGES_CSV,
        ["index", "path", "sha1", "width", "height", "duplicate_of"],
        ([i, p, h, w_h[0], w_h[1], d] for i, (p, h, w_h, d) in
         enumerate(zip(cache.paths, cache.hashes, cache.sizes, cache.duplicate_of, strict=True))),
    )
    duplicates = sum(1 for d in cache.duplicate_of if d)
    console.print(
        f"[bold]{len(cache.paths)}[/] images from {escape(root)}"
        + (f", [yellow]{len(skipped)} skipped[/] (reasons in {escape(run / 'skipped.csv')})" if skipped else "")
        + (f", [yellow]{duplicates} exact duplicates[/] (duplicate_of in images.csv)" if duplicates else "")
    )
    for s in skipped[:5]:
        console.print(f"  skipped {s.path}: {s.reason}", highlight=False, markup=False)
    if len(skipped) > 5:
        console.print(f"  ... and {len(skipped) - 5} more")
    if len(cache.paths) < 2:
        raise UserError(f"only {len(cache.paths)} readable image(s) in {root}; discover needs at least 2")
    check_k(cfg["k"], len(cache.paths), root)
    warn_k(cfg["k"], len(cache.paths), console)
    return cache


def check_batch_split(batch_size: int, world: int) -> None:
    """Under torchrun the batch size is the global one: every process takes an equal share."""
    if batch_size % world:
        raise UserError(f"--batch-size {batch_size} is the global batch and must divide over the {world} "
                        "processes torchrun started")


def _start_run(source: str | Path, preset: str | None, options: dict[str, Any],
               world: int = 1) -> tuple[Path, dict[str, Any], ScanResult]:
    parent, parent_cfg, asked_k, given = None, {}, options.get("k"), {}
    if options.get("from_run"):
        parent = open_run(options["from_run"])
        parent_cfg = read_json(parent / CONFIG_FILE)
        if run_domains(parent_cfg) == STYLE and parent_cfg.get("features_format", 1) < FEATURES_FORMAT:
            raise UserError(f"--from {parent}: a --domains style run made before its descriptor read image crops "
                            "(2026-12-04); its heads cannot read today's descriptor: run discover on the folder "
                            "afresh (with --labels for a review's corrections)")
        inherited = {k: parent_cfg.get(k, BEFORE_OPTION.get(k)) for k in ARCHITECTURE if options.get(k) is None}
        options = {**options, **{k: v for k, v in inherited.items() if v is not None}}
        options["from_run"] = str(parent.resolve())
    if options.get("labels"):
        options["labels"] = str(Path(options["labels"]).expanduser().resolve())
        given = read_labels(Path(options["labels"]))  # a missing or malformed file fails before anything is created
    plan = scan = None
    if preset is None:  # the plan depends on the folder's size: scan it once, here
        scan = scan_folder(check_source(source, options.get("project") or "runs"))
        plan = hardware_plan(resolve_device(options.get("device") or "auto"), len(scan.files),
                             options.get("head_batch") or 512, domains=run_domains(options))
        if options.get("iters") is not None and options.get("warmup_frac") is None:
            plan = fit_plan_to_iters(plan, options["iters"])
    cfg = resolve("discover", preset, defaults={**(plan or {}), **domain_defaults(options)}, **options)
    if uses_pretrained_trunk(cfg) and not cfg["backbone_size"]:
        cfg["backbone_size"] = 128 if resolve_device(cfg["device"]).type == "cuda" else 64
    if plan is not None and run_domains(cfg) == STYLE:
        if not options.get("backbone_size"):
            cfg["backbone_size"] = style_trunk_size(cfg["backbone_size"], median_side(scan.root, scan.files))
        if options.get("img_size") is None:
            # the plan's style decode: at the size the trunk reads, within --img-size's range
            cfg["img_size"] = max(32, min(256, cfg["backbone_size"]))
    if cfg["k"] == AUTO and not uses_pretrained_trunk(cfg):
        if options.get("k") is not None:  # asked for; auto only by default falls back to SCRATCH_K
            raise UserError(f"-k auto chooses K on a pretrained trunk's features; --backbone {cfg['backbone']} is "
                            "trained from scratch, so give -k N (or drop --backbone/--preset for the default trunk)")
        cfg["k"] = SCRATCH_K
    if uses_pretrained_trunk(cfg):
        load_backbone(cfg["backbone"], cfg["backbone_size"])  # a missing or unreadable trunk fails before the run
    elif cfg["domains"] != CONTENT:
        raise UserError(f"--domains {cfg['domains']} chooses what a pretrained trunk's heads read; --backbone "
                        f"{cfg['backbone']} is trained from scratch (drop --backbone/--preset for the default trunk)")
    new_cluster = None
    if NEW_CLUSTER in given.values():
        new_cluster = new_cluster_index(cfg, parent, parent_cfg, asked_k)
        cfg["k"] = new_cluster + 1
    check_batch_split(cfg["batch_size"], world)
    root = check_source(source, cfg["project"])
    scan = check_candidates(root, cfg["k"], scan)  # before the run folder exists: a wrong folder leaves nothing behind
    run = new_run_dir(cfg["project"], "discover", cfg["name"])
    lineage = {"from_run": cfg["from_run"] or None, "labels": cfg["labels"] or None}
    if new_cluster is not None:  # the cluster the new_cluster labels train toward (also on --resume)
        lineage["new_cluster"] = new_cluster
    meta = {"command": "discover", "source": str(root), "preset": preset, "version": __version__,
            "features_format": FEATURES_FORMAT,
            "created": dt.datetime.now().isoformat(timespec="seconds"), "resumed": [], "lineage": lineage}
    cfg = {**meta, **cfg}
    if cfg["labels"]:
        # the run keeps its own copy: resume, review and translate of this run read the labels it was trained with
        write_bytes(run / LABELS_CSV, Path(cfg["labels"]).read_bytes())
    write_json(run / CONFIG_FILE, cfg)
    return run, cfg, scan


def new_cluster_index(cfg: dict[str, Any], parent: Path | None, parent_cfg: dict[str, Any],
                      asked_k: int | None) -> int:
    """The cluster `new_cluster` labels form: K of a retrain --from a K-cluster run on a pretrained trunk, which
    then has K+1 clusters. Any other run with such labels is a one-line error."""
    if parent is None:
        raise UserError("the labels file has new_cluster labels: they form a new cluster only in a retrain from the "
                        "reviewed run (add --from RUN)")
    if not uses_pretrained_trunk(cfg):
        raise UserError(f"new_cluster labels need a run on a pretrained trunk: {parent} uses the from-scratch "
                        f"{cfg.get('backbone', SCRATCH)} guiding network, which cannot grow a cluster (label those "
                        "images cluster_N or exclude, or retrain from a run with the default --backbone)")
    k = int(parent_cfg["k"])
    if asked_k is not None and asked_k not in (k, k + 1):
        raise UserError(f"-k {asked_k}: new_cluster labels add one cluster to the {k} of {parent}, so the retrain "
                        f"has {k + 1}; leave -k out")
    return k


def training_labels(run: Path, paths: list[str], k: int, console: Console,
                    new_cluster: int | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """Per cached image: its human cluster (-1 = unlabelled), and the indices to train on (excluded ones left out).
    `new_cluster`: the cluster `new_cluster` labels train toward (None: they train unlabelled, as in runs made
    before new clusters could form)."""
    pool = np.arange(len(paths))
    if not (run / LABELS_CSV).is_file():
        return None, pool
    given = read_labels(run / LABELS_CSV)
    labels = np.full(len(paths), -1, dtype=np.int64)
    excluded, other = [], 0
    for i, path in enumerate(paths):
        label = given.get(path)
        if label is None:
            continue
        if label == EXCLUDE:
            excluded.append(i)
            continue
        if label == NEW_CLUSTER and new_cluster is not None:
            labels[i] = new_cluster
            continue
        try:
            cluster = parse_cluster(label)
        except UserError:
            other += 1  # a label naming no cluster of this run: it trains unlabelled
            continue
        if cluster >= k:
            raise UserError(f"{path} is labelled {label}, but this run has clusters 0..{k - 1}")
        labels[i] = cluster
    pool = np.setdiff1d(pool, excluded)
    unknown = len(set(given) - set(paths))
    console.print(f"semi-supervised: {int((labels >= 0).sum())} labelled images, {len(excluded)} excluded"
                  + (f", {other} with other labels trained as unlabelled" if other else "")
                  + (f", {unknown} labels for paths not in this folder ignored" if unknown else ""))
    if len(pool) < 2:
        raise UserError("fewer than 2 images left after the exclusions in the labels file")
    return labels, pool


def review_anchors(run: Path, cfg: dict[str, Any], paths: list[str], console: Console) -> np.ndarray | None:
    """A retrain from a reviewed run: the parent's cluster of every unlabelled image, less each untouched cluster's
    least confident `anchor_free_share` and each touched cluster's least confident `anchor_touched_free_share` (a
    run made before that option: touched clusters free). An exclusion touches no cluster, so a review of exclusions
    alone anchors every cluster but its free share: the clusters stay as they were, less the excluded images."""
    if not (cfg.get("from_run") and (run / LABELS_CSV).is_file() and cfg.get("w_anchor", 1.0) > 0):
        return None
    given = read_labels(run / LABELS_CSV)
    before, confidence = parent_assignments(Path(cfg["from_run"]))
    touched_share = cfg.get("anchor_touched_free_share", 1.0)
    anchors = anchor_targets(before, given, paths, confidence, cfg.get("anchor_free_share", 0.0), touched_share)
    touched = touched_clusters(before, given)
    untouched = sorted(set(anchors[anchors >= 0].tolist()) - touched)
    console.print(f"anchored: {int((anchors >= 0).sum())} images keep their cluster: the {len(untouched)} clusters "
                  "no label touched" + (f" ({', '.join(map(str, untouched))})" if untouched else "")
                  + (f", and all but the least confident {touched_share:.0%} of the {len(touched)} touched"
                     if touched and touched_share < 1 else ""))
    return anchors


def grown_weights(weights: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A K-cluster run's weights for a network with K+1 clusters: every per-cluster output (class heads, the
    discriminator's domain outputs) takes the K rows it has; the new last row keeps `own`'s."""
    out = {}
    for key, value in weights.items():
        mine = own.get(key)
        if (mine is not None and mine.dim() and value.dim() and mine.shape[0] == value.shape[0] + 1
                and mine.shape[1:] == value.shape[1:]):
            value = torch.cat([value, mine[value.shape[0]:].to(value.device, value.dtype)])
        out[key] = value
    return out


def _load_parent_weights(trainer: TunitTrainer, parent: Path, grow: bool = False) -> None:
    """The --from run's networks; `grow`: this run has one cluster more (new_cluster labels)."""
    state = load_checkpoint(parent / LAST)
    try:
        for name, weights in state["models"].items():
            net = getattr(trainer, name)
            net.load_state_dict(grown_weights(weights, net.state_dict()) if grow else weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise UserError(f"--from {parent}: its networks do not match this run's options ({first})") from None


def _resume_run(resume: str | Path, options: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    reject_options_on_resume(options)
    run = open_run(resume)
    cfg = read_json(run / CONFIG_FILE)
    if options.get("threads") is not None:  # how many cores to use may change; what is computed may not
        cfg["threads"] = options["threads"]
    cfg["resumed"] = [*cfg.get("resumed", []), dt.datetime.now().isoformat(timespec="seconds")]
    write_json(run / CONFIG_FILE, cfg)
    return run, cfg


def _setup(source: str | Path | None, preset: str | None, resume: str | Path | None, options: dict[str, Any],
           console: Console, world: int) -> tuple[Path, dict[str, Any]]:
    """Create (or reopen) the run and decode its images: rank 0's part before training starts."""
    if resume is not None:
        run, cfg = _resume_run(resume, options)
    elif source is None:
        raise UserError("give an image folder (or --resume RUN)")
    else:
        run, cfg, scan = _start_run(source, preset, options, world)
    console.print(f"run folder: {bold(run)}")
    report_optional("discover", console)
    with discard_on_failure(run, new=resume is None):  # e.g. no image decodes: no dead-end run folder is left
        cached = (run / IMAGES_CSV).is_file() and (run / "cache").is_dir()
        if not (cached and resume is not None):
            prepare_images(Path(cfg["source"]), run, cfg, console, scan if resume is None else None)
        n_images = len(read_csv(run / IMAGES_CSV))
        if cfg["batch_size"] > n_images:
            fits = n_images - n_images % world
            console.print(f"[yellow]batch size {cfg['batch_size']} > {n_images} images: using {fits}[/]")
            cfg["batch_size"] = fits
            write_json(run / CONFIG_FILE, cfg)
        check_batch_split(cfg["batch_size"], world)
        if uses_pretrained_trunk(cfg):
            console.print(describe_plan(cfg, n_images, resolve_device(cfg["device"])), highlight=False)
    return run, cfg


def _trunk_features(cfg: dict[str, Any], trunk: torch.nn.Module, device: torch.device, run: Path,
                    images: np.ndarray, console: Console) -> None:
    """Compute the trunk's features of every image into the run folder (or find them there, or take them from the
    --from run when it read the same images with the same trunk)."""
    widths = (trunk.content_dim, trunk.style_dim)
    if cached_features(run, len(images), widths) is not None:  # e.g. computed by the -k auto sweep, or before a resume
        return
    parent = Path(cfg["from_run"]) if cfg.get("from_run") else None
    if parent is not None and reuse_parent_features(parent, run, cfg):
        console.print(f"trunk features: the same images and trunk as {escape(parent)}, reused")
        return
    with _progress(console) as progress:
        task = progress.add_task("trunk features", total=len(images))
        run_features(run, trunk, images, device, autocast_dtype(cfg["precision"], device),
                     progress=lambda done, total: progress.update(task, completed=done))


def _auto_k(run: Path, cfg: dict[str, Any], images: np.ndarray, paths: list[str], device: torch.device,
             console: Console) -> dict[str, Any]:
    """-k auto: the trunk's features (computed here, before any network depends on K), the descriptor the heads will
    read, and a sweep over --k-range on it; returns the config with the chosen K, also saved in config.json."""
    guiding = build_guiding({**cfg, "k": 2}).to(device)  # the trunk and descriptor only: no head is trained here
    _trunk_features(cfg, guiding.trunk, device, run, images, console)
    phase = HeadPhase(guiding, *cached_features(run, len(images)), cfg, device, images=images,
                      crop_moments=cached_crop_moments(run, len(images)))
    phase.fit_descriptor()  # the same fit a fresh run makes before its heads start (same features, same seed)
    desc = phase.descriptors(0).cpu().numpy()
    return sweep_k(run, cfg, desc, paths, console, device)


def reuse_parent_features(parent: Path, run: Path, cfg: dict[str, Any]) -> bool:
    """Copy the parent run's trunk features when it decoded the same images (paths and content) at the same size
    with the same trunk into a cache of the same format; False when anything differs."""
    parent_cfg = read_json(parent / CONFIG_FILE)
    same = all(parent_cfg.get(key, BEFORE_OPTION.get(key)) == cfg.get(key, BEFORE_OPTION.get(key))
               for key in ("backbone", "backbone_size", "img_size", "domains"))
    # a content run's cache is the same in every format; a style run's changed in formats 2 and 3
    same_format = run_domains(cfg) == CONTENT or parent_cfg.get("features_format", 1) == FEATURES_FORMAT
    if not (same and same_format) or cached_features(run, len(read_csv(run / IMAGES_CSV))) is not None:
        return False
    mine, theirs = read_csv(run / IMAGES_CSV), read_csv(parent / IMAGES_CSV)
    if [(r["path"], r["sha1"]) for r in mine] != [(r["path"], r["sha1"]) for r in theirs]:
        return False
    if cached_features(parent, len(theirs)) is None:
        return False
    for name in (CROP_MOMENTS_NPZ, CONTENT_NPY, STYLE_NPY):  # the features last: they mark the copy as done
        if (parent / name).is_file():
            with atomic_path(run / name) as tmp:
                shutil.copyfile(parent / name, tmp)
    return True


def discover(
    source: str | Path | None = None,
    *,
    preset: str | None = None,
    resume: str | Path | None = None,
    console: Console | None = None,
    **options: Any,
) -> Path:
    """Train TUNIT on an image folder (or continue a run with `resume`) and export its results; returns the run.

    Started by `torchrun --nproc_per_node N -m i2icurate discover ...`, it trains with DistributedDataParallel:
    rank 0 prepares the run and exports it, every rank trains on its share of each batch.
    """
    dist, device_name = init_distributed(options.get("device") or "auto")
    console = console or Console()
    if not dist.is_main:
        console = Console(quiet=True)
    threads = choose_threads(requested_threads(options, resume))  # chosen before decoding loads the CPU
    run = None
    try:
        run, cfg = run_on_main_and_share(dist, lambda: _setup(source, preset, resume, options, console, dist.world))
        apply_threads(threads, console)
        images = load_cache(run / "cache", cfg["img_size"])
        paths = [row["path"] for row in read_csv(run / IMAGES_CSV)]
        if cfg["k"] == AUTO:  # chosen once; config.json then holds the number, which --resume and --from reuse
            sweep_device = resolve_device(device_name if dist.enabled else cfg["device"])
            cfg = run_on_main_and_share(dist, lambda: _auto_k(run, cfg, images, paths, sweep_device, console))
        new_cluster = (cfg.get("lineage") or {}).get("new_cluster")
        labels, pool = training_labels(run, paths, cfg["k"], console, new_cluster)
        if cfg["batch_size"] > len(pool):  # a labels file excluded images
            fits = len(pool) - len(pool) % dist.world
            console.print(f"[yellow]batch size {cfg['batch_size']} > {len(pool)} images left: using {fits}[/]")
            cfg["batch_size"] = fits
            if dist.is_main:
                write_json(run / CONFIG_FILE, cfg)
        if new_cluster is not None and not bool((labels == new_cluster).any()):
            raise UserError("no image of this folder is labelled new_cluster: the new cluster would have no members")
        anchors = review_anchors(run, cfg, paths, console)
        trainer = TunitTrainer(cfg, images, labels, pool, dist=dist,
                               device=resolve_device(device_name) if dist.enabled else None, anchors=anchors)
        fresh = inherited = False
        if (run / LAST).is_file():
            trainer.load_state_dict(load_checkpoint(run / LAST))
            console.print(f"resuming from iteration {trainer.step_count}")
        elif cfg.get("from_run"):
            _load_parent_weights(trainer, Path(cfg["from_run"]), grow=new_cluster is not None)
            console.print(f"starting from the weights of {escape(cfg['from_run'])}")
            inherited = True
        else:
            fresh = True
        if trainer.pretrained:
            run_on_main_and_share(dist, lambda: _trunk_features(cfg, trainer.E.trunk, trainer.device, run, images,
                                                                console))
            trainer.attach_features(*cached_features(run, len(images)), fresh=fresh, inherited=inherited,
                                    crop_moments=cached_crop_moments(run, len(images)),
                                    new_cluster=new_cluster if inherited else None)
            phase = trainer.head_phase
            if phase.edge_weights is not None:
                console.print("neighbourhood term: edge maps "
                              + ("moment-normalised" if phase.edge_normalised else "as they are")
                              + f" (the more reciprocal), {float(phase.edge_weights.mean()):.0%} of the neighbours "
                              "count")
            if inherited and new_cluster is not None:
                console.print(f"new cluster {new_cluster} formed from the {int((labels == new_cluster).sum())} "
                              f"images labelled new_cluster (K {new_cluster} -> {cfg['k']})")
        trunk = f"{cfg['backbone']} trunk, " if trainer.pretrained else ""
        console.print(
            f"TUNIT: K={cfg['k']}, {trunk}{cfg['img_size']} px, batch {cfg['batch_size']}, {cfg['iters']} iterations "
            f"(guiding network alone until {trainer.gan_start}) on {trainer.device}"
            + (" with bf16 autocast" if trainer.amp_dtype is not None else "")
            + (f", {dist.world} processes (DistributedDataParallel)" if dist.enabled else "")
        )
        train_run(trainer, run, cfg, console, "discover", f"i2icurate discover --resume {run}", dist)
    except Exception:
        if dist.is_main and resume is None:
            discard_unstarted(run)  # failed before its first checkpoint (e.g. --from weights that do not fit)
        raise
    finally:
        shutdown(dist)
    if dist.is_main:
        export_run(run, console)
    return run
