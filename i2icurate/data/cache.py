"""Decode a folder's images once into a compact (N, S, S, 3) uint8 memmap cache, reused while the files are unchanged.

`cache_dir/images_{S}.npy` holds the kept images in input order; `cache_dir/index_{S}.json` records which files they
came from (and their stat signature, so a changed folder is re-decoded), their content hashes, original sizes, exact
duplicates and the skipped files with reasons.
"""

from __future__ import annotations

import hashlib
import io
import math
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from i2icurate.data.imageio import ImageSkip, decode_with_size
from i2icurate.data.scan import Skip
from i2icurate.errors import UserError
from i2icurate.runs import atomic_path, read_json, write_json

INDEX_VERSION = 1
CHUNK = 8  # files per worker task: amortizes inter-process overhead while keeping the in-flight window small

# (sha1 or "", (width, height) or None, array or None, skip reason or "")
Decoded = tuple[str, tuple[int, int] | None, np.ndarray | None, str]


@dataclass
class CacheResult:
    """Row i of the cache array is `paths[i]`; `duplicate_of[i]` is "" or the first path with identical bytes."""

    paths: list[str]
    hashes: list[str]
    sizes: list[tuple[int, int]]
    duplicate_of: list[str]
    skipped: list[Skip]
    array_path: Path


def array_file(cache_dir: str | Path, img_size: int) -> Path:
    """Where the cache array for one image size lives."""
    return Path(cache_dir) / f"images_{img_size}.npy"


def index_file(cache_dir: str | Path, img_size: int) -> Path:
    """Where the cache index for one image size lives."""
    return Path(cache_dir) / f"index_{img_size}.json"


def _decode_file(path: str, size: int, max_pixels: int) -> Decoded:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except PermissionError:
        return "", None, None, "permission denied"
    except OSError as exc:
        return "", None, None, f"cannot read: {exc.strerror or exc}"
    digest = hashlib.sha1(data).hexdigest()
    try:
        array, original = decode_with_size(io.BytesIO(data), size, max_pixels)
    except ImageSkip as skip:
        return digest, None, None, skip.reason
    return digest, original, array, ""


def _decode_chunk(root: str, rels: Sequence[str], size: int, max_pixels: int) -> list[Decoded]:
    """Worker task: decode a few files (top-level so that spawned processes can import it)."""
    return [_decode_file(os.path.join(root, rel), size, max_pixels) for rel in rels]


def _decoded(root: Path, files: Sequence[str], size: int, workers: int, max_pixels: int) -> Iterator[Decoded]:
    """Decode results in input order; in parallel, at most a bounded window of chunks is in flight or buffered."""
    chunks = [list(files[i : i + CHUNK]) for i in range(0, len(files), CHUNK)]
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            yield from _decode_chunk(str(root), chunk, size, max_pixels)
        return
    # spawn, not fork: the parent may already hold threads (torch, BLAS) that a forked child would inherit broken
    pool = ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=multiprocessing.get_context("spawn"))
    try:
        todo = iter(chunks)
        pending: deque[tuple[list[str], Any]] = deque()

        def submit() -> None:
            chunk = next(todo, None)
            if chunk is not None:
                pending.append((chunk, pool.submit(_decode_chunk, str(root), chunk, size, max_pixels)))

        for _ in range(3 * workers):
            submit()
        while pending:
            chunk, future = pending.popleft()
            try:
                results = future.result()
            except BrokenProcessPool:
                raise UserError(
                    f"an image decoder process died while reading one of {chunk[0]} .. {chunk[-1]} "
                    "(out of memory or a crashing decoder?); try --workers 1 or a lower --max-pixels"
                ) from None
            submit()
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _stats(root: Path, files: Sequence[str]) -> list[list[int] | None]:
    out: list[list[int] | None] = []
    for rel in files:
        try:
            st = os.stat(root / rel)
            out.append([st.st_size, st.st_mtime_ns])
        except OSError:
            out.append(None)
    return out


def _key(root: Path, files: Sequence[str], img_size: int, max_pixels: int) -> dict[str, Any]:
    """What must match for an existing cache to be reused."""
    return {
        "version": INDEX_VERSION,
        "root": str(root.resolve()),
        "img_size": img_size,
        "max_pixels": max_pixels,
        "files": list(files),
        "stats": _stats(root, files),
    }


def _reuse(cache_dir: Path, img_size: int, key: dict[str, Any]) -> CacheResult | None:
    try:
        index = read_json(index_file(cache_dir, img_size))
        if any(index.get(name) != value for name, value in key.items()):
            return None
        result = CacheResult(
            paths=list(index["paths"]),
            hashes=list(index["hashes"]),
            sizes=[(int(w), int(h)) for w, h in index["sizes"]],
            duplicate_of=list(index["duplicate_of"]),
            skipped=[Skip(path, reason) for path, reason in index["skipped"]],
            array_path=array_file(cache_dir, img_size),
        )
        shape = np.load(result.array_path, mmap_mode="r").shape
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return result if shape == (len(result.paths), img_size, img_size, 3) else None


def _truncate_rows(path: Path, rows: int) -> None:
    """Shrink an .npy file to its first `rows` rows in place: rewrite the shape in the header, cut the data."""
    fmt = np.lib.format
    with open(path, "r+b") as f:
        version = fmt.read_magic(f)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
        f.seek(0)
        header = {"descr": fmt.dtype_to_descr(dtype), "fortran_order": fortran, "shape": (rows, *shape[1:])}
        (fmt.write_array_header_1_0 if version == (1, 0) else fmt.write_array_header_2_0)(f, header)
        # numpy pads headers so the first axis can grow to 21 digits, so the data never has to move
        if f.tell() != offset:
            raise RuntimeError(f"npy header changed length while shrinking {path}")
        f.truncate(offset + rows * math.prod(shape[1:]) * dtype.itemsize)


def build_cache(
    root: str | Path,
    files: Sequence[str],
    img_size: int,
    cache_dir: str | Path,
    workers: int,
    max_pixels: int,
    progress: Callable[[int, int], None] | None = None,
) -> CacheResult:
    """Decode `files` (relative to `root`) once into `cache_dir/images_{img_size}.npy`, or reuse a matching cache.

    Unreadable files are listed in `skipped`; exact duplicates are kept and marked. Writes only under `cache_dir`.
    """
    root, cache_dir, total = Path(root), Path(cache_dir), len(files)
    if total == 0:
        raise UserError(f"no image files to decode in {root}")
    key = _key(root, files, img_size, max_pixels)
    reused = _reuse(cache_dir, img_size, key)
    if reused is not None:
        if progress:
            progress(total, total)
        return reused

    cache_dir.mkdir(parents=True, exist_ok=True)
    index_file(cache_dir, img_size).unlink(missing_ok=True)  # never leave an index describing a different array
    paths: list[str] = []
    hashes: list[str] = []
    sizes: list[tuple[int, int]] = []
    duplicate_of: list[str] = []
    skipped: list[Skip] = []
    first_with: dict[str, str] = {}
    final = array_file(cache_dir, img_size)
    with atomic_path(final) as tmp:
        rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(total, img_size, img_size, 3))
        for done, (rel, (digest, original, array, reason)) in enumerate(
            zip(files, _decoded(root, files, img_size, workers, max_pixels), strict=True), start=1
        ):
            if array is None or original is None:
                skipped.append(Skip(rel, reason))
            else:
                rows[len(paths)] = array
                duplicate_of.append(first_with.get(digest, ""))
                first_with.setdefault(digest, rel)
                paths.append(rel)
                hashes.append(digest)
                sizes.append(original)
            if progress:
                progress(done, total)
        rows.flush()
        del rows  # unmap before truncating
        if not paths:
            example = f" (e.g. {skipped[0].path}: {skipped[0].reason})" if skipped else ""
            raise UserError(f"none of the {total} image files in {root} could be decoded{example}")
        if len(paths) < total:
            _truncate_rows(tmp, len(paths))
    index = key | {
        "paths": paths,
        "hashes": hashes,
        "sizes": [list(s) for s in sizes],
        "duplicate_of": duplicate_of,
        "skipped": [[s.path, s.reason] for s in skipped],
    }
    write_json(index_file(cache_dir, img_size), index)
    return CacheResult(paths, hashes, sizes, duplicate_of, skipped, final)


def load_cache(result_or_cache_dir: CacheResult | str | Path, img_size: int) -> np.ndarray:
    """Open the cached (N, S, S, 3) uint8 array read-only as a memmap."""
    if isinstance(result_or_cache_dir, CacheResult):
        path = result_or_cache_dir.array_path
    else:
        path = array_file(result_or_cache_dir, img_size)
    if not path.is_file():
        raise UserError(f"image cache not found: {path}")
    array = np.load(path, mmap_mode="r")
    if array.ndim != 4 or array.shape[1:] != (img_size, img_size, 3) or array.dtype != np.uint8:
        raise UserError(f"image cache {path} holds {array.shape} {array.dtype}, not {img_size}x{img_size} RGB")
    return array
