"""Build (or refresh) the FiftyOne dataset of a discover run: one sample per image with its pseudo-domain,
confidence, style code and outlier score, the run's UMAP and a style-similarity index, and saved views to review."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from i2icurate.curation.changes import CHANGES_CSV
from i2icurate.curation.fo_env import import_fiftyone
from i2icurate.errors import UserError
from i2icurate.markup import bold, escape
from i2icurate.runs import open_run, read_csv, read_json

PSEUDO_FIELD = "pseudo_domain"
HUMAN_FIELD = "human_label"  # written by the review plugin's operator (plugin/__init__.py uses the same name)
UMAP_KEY = "umap"
SIMILARITY_KEY = "style_sim"
RUN_INFO_KEY = "i2icurate_run"
LOW_CONFIDENCE_PERCENTILE = 10
LOW_CONFIDENCE_FLOOR = 0.5
OUTLIER_SHARE = 0.02
INGEST_BATCH = 20_000  # samples per add_samples call: bounded memory for a million images, few round trips


def dataset_name(run: str | Path) -> str:
    """The dataset name of a run folder, stable across calls: `i2icurate-discover-exp3-<6 hex of its path>`.

    The hash of the resolved path keeps two projects' `exp3` apart; the readable part helps in the App's list.
    """
    folder = Path(run).resolve()
    digest = hashlib.sha1(str(folder).encode("utf-8")).hexdigest()[:6]
    return f"i2icurate-{folder.parent.name}-{folder.name}-{digest}"


def load_run_tables(run: Path) -> dict[str, Any]:
    """The exported per-image tables of a discover run, checked for consistent lengths."""
    config = read_json(run / "config.json")
    missing = [name for name in ("assignments.csv", "embeddings.npy", "umap.npy") if not (run / name).is_file()]
    if missing:
        raise UserError(f"{run} has no {', '.join(missing)}: finish the run or run `i2icurate export {run}` first")
    rows = read_csv(run / "assignments.csv")
    embeddings = np.load(run / "embeddings.npy")
    points = np.load(run / "umap.npy")
    if not rows:
        raise UserError(f"{run}/assignments.csv lists no images")
    if len(embeddings) != len(rows) or len(points) != len(rows):
        raise UserError(f"{run}: assignments.csv has {len(rows)} rows but embeddings.npy has {len(embeddings)} and "
                        f"umap.npy {len(points)}; re-run `i2icurate export {run}`")
    source = config.get("source")
    if not source:
        raise UserError(f"{run}/config.json has no 'source' folder")
    moved = [row["path"] for row in read_csv(run / CHANGES_CSV)] if (run / CHANGES_CSV).is_file() else None
    return {"config": config, "rows": rows, "embeddings": embeddings.astype(np.float32),
            "points": points.astype(np.float32), "source": Path(source), "moved": moved}


# Stored columns besides `filepath`; the pseudo label is written as two leaf fields on update so that the
# Classification keeps its id (and any label tags a reviewer put on it).
COLUMNS = ("i2i_path", f"{PSEUDO_FIELD}.label", f"{PSEUDO_FIELD}.confidence", "margin", "outlier_score",
           "duplicate", "duplicate_of", "embedding")


def _columns(tables: dict[str, Any]) -> dict[str, list[Any]]:
    """Stored path (filepath and each of COLUMNS) -> one plain value per row of assignments.csv."""
    rows, source = tables["rows"], tables["source"]
    return {"filepath": [str(source / row["path"]) for row in rows],
            "i2i_path": [row["path"] for row in rows],
            f"{PSEUDO_FIELD}.label": [f"cluster_{int(row['cluster'])}" for row in rows],
            f"{PSEUDO_FIELD}.confidence": [float(row["confidence"]) for row in rows],
            "margin": [float(row["margin"]) for row in rows],
            "outlier_score": [float(row["outlier_score"]) for row in rows],
            "duplicate": [bool(row.get("duplicate_of")) for row in rows],
            "duplicate_of": [row.get("duplicate_of") or None for row in rows],
            "embedding": list(tables["embeddings"])}


def _declare_fields(dataset: Any, fo: Any) -> None:
    """Declare the schema up front: FiftyOne cannot infer a type from an all-empty column (e.g. no duplicates),
    `human_label` must exist before the first edit (the App's sidebar, `sync`), and samples are then added without
    per-sample schema inference and validation."""
    schema = {"i2i_path": (fo.StringField, {}), "margin": (fo.FloatField, {}), "outlier_score": (fo.FloatField, {}),
              "duplicate": (fo.BooleanField, {}), "duplicate_of": (fo.StringField, {}),
              "embedding": (fo.VectorField, {}),
              PSEUDO_FIELD: (fo.EmbeddedDocumentField, {"embedded_doc_type": fo.Classification}),
              HUMAN_FIELD: (fo.EmbeddedDocumentField, {"embedded_doc_type": fo.Classification})}
    for name, (ftype, kwargs) in schema.items():
        if dataset.get_field(name) is None:
            dataset.add_sample_field(name, ftype, **kwargs)


def _same(old: Any, new: Any) -> bool:
    if isinstance(new, np.ndarray):
        return old is not None and np.array_equal(np.asarray(old), new)
    return old == new


def _add_new(dataset: Any, columns: dict[str, list[Any]], rows: list[int], fo: Any) -> None:
    """Add the rows not in the dataset yet in bulk batches of INGEST_BATCH, so memory stays bounded at any size."""
    for start in range(0, len(rows), INGEST_BATCH):
        _add_batch(dataset, columns, rows[start : start + INGEST_BATCH], fo)


def _add_batch(dataset: Any, columns: dict[str, list[Any]], rows: list[int], fo: Any) -> None:
    """One `add_samples` call for `rows`, then one `set_values` for their style codes."""
    label, confidence = f"{PSEUDO_FIELD}.label", f"{PSEUDO_FIELD}.confidence"
    plain = [name for name in COLUMNS if name not in (label, confidence, "embedding")]
    pseudo = [fo.Classification(label=columns[label][i], confidence=columns[confidence][i]) for i in rows]
    samples = [fo.Sample(filepath=columns["filepath"][i], **{PSEUDO_FIELD: pseudo[j]},
                         **{name: columns[name][i] for name in plain}) for j, i in enumerate(rows)]
    # The values are ours and typed by _declare_fields, so FiftyOne's per-sample validation is skipped. The vectors
    # go in separately: add_samples would serialise each one and decode it twice more (~20 % faster this way).
    ids = dataset.add_samples(samples, expand_schema=False, validate=False, progress=False)
    del samples
    dataset.set_values("embedding", {sid: columns["embedding"][i] for sid, i in zip(ids, rows, strict=True)},
                       key_field="id", progress=False)


def _update_existing(dataset: Any, columns: dict[str, list[Any]], fo: Any) -> int:
    """Write only the values that differ from the stored ones, one `set_values` per changed column."""
    stored = dataset.values(["filepath", *COLUMNS])
    where = {path: i for i, path in enumerate(stored[0])}
    position = {path: i for i, path in enumerate(columns["filepath"])}
    common = [path for path in stored[0] if path in position]
    label_path = f"{PSEUDO_FIELD}.label"
    # a sample whose pseudo label was cleared gets a whole new Classification (no leaf to update)
    missing = {path for path in common if stored[1 + COLUMNS.index(label_path)][where[path]] is None}
    touched: set[str] = set()
    for c, name in enumerate(COLUMNS, start=1):
        new, skip = columns[name], missing if name.startswith(PSEUDO_FIELD + ".") else set()
        changes = {path: new[position[path]] for path in common
                   if path not in skip and not _same(stored[c][where[path]], new[position[path]])}
        if changes:
            dataset.set_values(name, changes, key_field="filepath", progress=False)
            touched.update(changes)
    if missing:
        conf_path = f"{PSEUDO_FIELD}.confidence"
        dataset.set_values(PSEUDO_FIELD, {path: fo.Classification(label=columns[label_path][position[path]],
                                                                  confidence=columns[conf_path][position[path]])
                                          for path in missing}, key_field="filepath", progress=False)
        touched.update(missing)
    return len(touched)


def _write_samples(dataset: Any, columns: dict[str, list[Any]], fo: Any, console: Console) -> tuple[int, int]:
    """Remove samples the run no longer lists, add new ones, update changed values; returns (added, updated)."""
    existing = set(dataset.values("filepath"))
    paths = columns["filepath"]
    keep = set(paths)
    stale = [p for p in existing if p not in keep]
    if stale:  # they would break the brain runs, whose arrays follow the run's rows
        console.print(f"[yellow]removing {len(stale)} samples that the run no longer lists[/]")
        dataset.delete_samples(dataset.select_by("filepath", stale))
    new = [i for i, p in enumerate(paths) if p not in existing]
    if new:
        _add_new(dataset, columns, new, fo)
    updated = _update_existing(dataset, columns, fo) if len(new) < len(paths) else 0
    return len(new), updated


def _brain_runs(dataset: Any, tables: dict[str, Any]) -> None:
    """The run's own UMAP as a visualization (not recomputed) and a similarity index on the style codes."""
    import fiftyone.brain as fob

    order = {p: i for i, p in enumerate(str(tables["source"] / row["path"]) for row in tables["rows"])}
    index = np.array([order[p] for p in dataset.values("filepath")])  # dataset order -> row of the run's arrays
    for key in (UMAP_KEY, SIMILARITY_KEY):
        if dataset.has_brain_run(key):
            dataset.delete_brain_run(key)
    fob.compute_visualization(dataset, points=tables["points"][index], brain_key=UMAP_KEY, progress=False)
    # from the `embedding` field: the index then reads the stored codes instead of keeping a second copy
    fob.compute_similarity(dataset, embeddings="embedding", brain_key=SIMILARITY_KEY, backend="sklearn",
                           progress=False)


def _saved_views(dataset: Any, tables: dict[str, Any]) -> None:
    """`cluster_<i>` per non-empty cluster, `low_confidence` and `outliers`, replacing earlier ones."""
    from fiftyone import ViewField as F

    rows = tables["rows"]
    clusters = sorted({int(row["cluster"]) for row in rows})
    confidence = np.array([float(row["confidence"]) for row in rows])
    scores = np.array([float(row["outlier_score"]) for row in rows])
    views: dict[str, Any] = {}
    for c in clusters:
        views[f"cluster_{c}"] = dataset.match(F(f"{PSEUDO_FIELD}.label") == f"cluster_{c}")
    threshold = max(float(np.percentile(confidence, LOW_CONFIDENCE_PERCENTILE)), LOW_CONFIDENCE_FLOOR)
    views["low_confidence"] = (dataset.match(F(f"{PSEUDO_FIELD}.confidence") < threshold)
                               .sort_by(f"{PSEUDO_FIELD}.confidence"))
    top = max(1, math.ceil(OUTLIER_SHARE * len(scores)))
    cutoff = float(np.sort(scores)[::-1][top - 1])
    views["outliers"] = dataset.match(F("outlier_score") >= cutoff).sort_by("outlier_score", reverse=True)
    if tables.get("moved") is not None:  # a retrain from a reviewed run: what moved, labelled or on its own
        views["moved"] = dataset.match(F("i2i_path").is_in(tables["moved"]))

    for name in dataset.list_saved_views():  # clusters that became empty after a re-export
        if name.startswith("cluster_") and name not in views:
            dataset.delete_saved_view(name)
    for name, view in views.items():
        dataset.save_view(name, view, overwrite=True)


def view_counts(dataset: Any) -> dict[str, int]:
    """Saved view name -> number of samples, for the summary `review` prints."""
    return {name: dataset.load_saved_view(name).count() for name in dataset.list_saved_views()}


def build_dataset(run: str | Path, console: Console | None = None) -> Any:
    """Create or refresh the persistent FiftyOne dataset of a discover run and return it (a `fo.Dataset`).

    Re-running updates values in place (same samples, no duplicates) and replaces the brain runs and saved views.
    Human edits (tags, `human_label`) are kept.
    """
    console = console or Console()
    folder = open_run(run).resolve()
    tables = load_run_tables(folder)
    if not tables["source"].is_dir():
        console.print(f"[yellow]the image folder {escape(tables['source'])} is missing: the App will show no images[/]")
    fo = import_fiftyone()
    name = dataset_name(folder)
    start = time.perf_counter()
    dataset = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name, persistent=True)
    dataset.persistent = True
    _declare_fields(dataset, fo)
    added, updated = _write_samples(dataset, _columns(tables), fo, console)
    dataset.info[RUN_INFO_KEY] = str(folder)
    dataset.info["i2icurate_k"] = int(tables["config"].get("k", 0)) or None
    dataset.save()
    _brain_runs(dataset, tables)
    _saved_views(dataset, tables)
    console.print(f"FiftyOne dataset {bold(name)}: {added} samples added, {updated} updated, "
                  f"{len(tables['rows']) - added - updated} unchanged ({time.perf_counter() - start:.1f} s)")
    return dataset
