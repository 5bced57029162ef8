"""Pictures for people: a UMAP scatter of the style space, per-cluster contact sheets and translation grids.

Everything is drawn with Pillow and every PNG is written atomically (temp file beside it, then rename).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from i2icurate.export.spans import CHUNK_ROWS, row_spans
from i2icurate.runs import atomic_path

# 20 distinct categorical colours (after Sasha Trubetskoy's list); cluster i gets PALETTE[i % 20].
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (67, 99, 216), (245, 130, 49), (145, 30, 180),
    (66, 212, 244), (240, 50, 230), (191, 239, 69), (70, 153, 144), (154, 99, 36),
    (128, 0, 0), (0, 0, 117), (128, 128, 0), (255, 225, 25), (250, 190, 212),
    (220, 190, 255), (170, 255, 195), (255, 216, 177), (128, 128, 128), (0, 0, 0),
)  # fmt: skip

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
MIN_TILE = 64  # tiny images (e.g. 28 px) are upscaled to at least this many pixels per tile
MAX_TILE = 256  # big images are shrunk to this so a sheet of 32 stays a reasonable size
PAD = 4


def cluster_color(i: int) -> tuple[int, int, int]:
    """The palette colour of cluster `i` (cycling after 20 clusters)."""
    return PALETTE[int(i) % len(PALETTE)]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _text_size(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom - top)


def _fit(font: ImageFont.ImageFont | ImageFont.FreeTypeFont, text: str, width: int) -> str:
    """`text`, shortened with "..." until it fits in `width` pixels."""
    if _text_size(font, text)[0] <= width:
        return text
    while text and _text_size(font, text + "...")[0] > width:
        text = text[:-1]
    return text + "..." if text else ""


def _save_png(image: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")  # explicit format: the temp name ends in .tmp
    return path


# --- embedding to 2-D -------------------------------------------------------------------------------------------


def _pca_2d(x: np.ndarray) -> np.ndarray:
    out = np.zeros((len(x), 2), dtype=np.float32)
    if len(x) < 2:
        return out
    centred = x - x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    m = min(2, len(s))
    out[:, :m] = (u[:, :m] * s[:m]).astype(np.float32)
    return out


# Fitting UMAP costs minutes per 100k points and memory that grows with N; above UMAP_FIT_MAX_ROWS it is fitted on
# a seeded sample of UMAP_SAMPLE_ROWS points and the rest are placed with `transform`, CHUNK_ROWS at a time.
UMAP_FIT_MAX_ROWS = 100_000
UMAP_SAMPLE_ROWS = 50_000


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        # umap/numba chatter: "n_jobs overridden by random_state", TensorFlow missing, numba deprecations.
        for category in (UserWarning, FutureWarning, DeprecationWarning, ImportWarning, RuntimeWarning):
            warnings.simplefilter("ignore", category)
        yield


def _float_rows(x: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
    return np.asarray(x[rows], dtype=np.float32).reshape(-1, x.shape[1])


def umap_2d(
    embeddings: np.ndarray,
    seed: int,
    n_neighbors: int = 15,
    fit_max_rows: int | None = None,
    sample_rows: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A 2-D UMAP layout (N, 2) float32 of the embeddings, reproducible for a given seed.

    UMAP needs a few points to build its neighbour graph: with fewer than 4 images the layout falls back to the
    first two principal components (plain numpy SVD), and a single image sits at the origin. Above `fit_max_rows`
    images UMAP is fitted on `sample_rows` of them drawn with `seed` and the others are placed by `transform`,
    `chunk_rows` at a time, so a memory-mapped input is never read whole. The layout is written into `out` (N, 2)
    when given (e.g. a memmap), else into a new array. None thresholds = the module's UMAP_* constants.
    """
    fit_max_rows = UMAP_FIT_MAX_ROWS if fit_max_rows is None else fit_max_rows
    sample_rows = UMAP_SAMPLE_ROWS if sample_rows is None else sample_rows
    n = len(embeddings)
    x = np.asarray(embeddings)  # no copy for an array or memmap
    x = x if x.ndim == 2 else x.reshape(n, -1)
    points = np.zeros((n, 2), dtype=np.float32) if out is None else out
    if n < 4:
        points[:] = _pca_2d(_float_rows(x, slice(None)))
        return points
    sampled = n > fit_max_rows
    fit_rows = _umap_sample(n, min(sample_rows, n), seed) if sampled else slice(None)
    fit_n = len(fit_rows) if sampled else n
    with _quiet():
        import umap

        reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(n_neighbors, fit_n - 1))
        points[fit_rows] = reducer.fit_transform(_float_rows(x, fit_rows))
        if sampled:
            _transform_rest(reducer, x, fit_rows, points, chunk_rows)
    return points


def _umap_sample(n: int, size: int, seed: int) -> np.ndarray:
    """`size` of the n row indices, drawn with `seed`, sorted (a memmap is then read front to back)."""
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _transform_rest(reducer: Any, x: np.ndarray, fitted: np.ndarray, points: np.ndarray, chunk_rows: int) -> None:
    """Place the rows not in `fitted` with `reducer.transform`, a chunk at a time."""
    is_fitted = np.zeros(len(x), dtype=bool)
    is_fitted[fitted] = True
    for start, stop in row_spans(len(x), chunk_rows):
        rest = start + np.flatnonzero(~is_fitted[start:stop])
        if len(rest):
            points[rest] = reducer.transform(_float_rows(x, rest))


# --- scatter ----------------------------------------------------------------------------------------------------


def _dot_radius(n: int) -> int:
    # ~4 px for 100 points, 3 for 1k, 2 for 10k, 1 from ~100k on.
    return max(1, int(round(7 - 1.25 * math.log10(max(n, 1)))))


def scatter_png(points: np.ndarray, clusters: np.ndarray, path: str | Path, k: int, title: str = "") -> Path:
    """Draw a 2-D layout coloured by cluster, ~1000x1000 px plus a legend column "cluster i (n)"."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(clusters).astype(np.int64).reshape(-1)
    if len(pts) != len(labels):
        raise ValueError(f"{len(pts)} points but {len(labels)} cluster labels")
    plot, margin, title_h, row_h = 1000, 30, 44, 22
    rows_per_col = max(1, (plot - 2 * margin) // row_h)
    legend_cols = max(1, math.ceil(k / rows_per_col))
    legend_w = 180 * legend_cols + margin
    canvas = np.full((title_h + plot, plot + legend_w, 3), BACKGROUND, dtype=np.uint8)

    finite = np.isfinite(pts).all(axis=1)
    if finite.any():
        lo, hi = pts[finite].min(axis=0), pts[finite].max(axis=0)
        span = float(max(hi - lo)) or 1.0  # one scale for both axes keeps the layout's shape
        inner = plot - 2 * margin
        centre_offset = (inner - (hi - lo) / span * inner) / 2
        xy = (pts[finite] - lo) / span * inner + margin + centre_offset
        px = np.clip(np.round(xy[:, 0]).astype(np.int64), 0, plot - 1)
        py = np.clip(np.round(plot - 1 - xy[:, 1]).astype(np.int64), 0, plot - 1) + title_h
        lab = labels[finite]
        valid = (lab >= 0) & (lab < k)
        col = np.where(valid[:, None], np.asarray(PALETTE, np.uint8)[lab % len(PALETTE)], np.uint8(160))
        # A fixed shuffle so no cluster is systematically painted over by the next one.
        order = np.random.default_rng(0).permutation(len(px))
        px, py, col = px[order], py[order], col[order]
        r = _dot_radius(len(pts))
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                if dx * dx + dy * dy <= r * r + r * 0.5:
                    x = np.clip(px + dx, 0, plot - 1)
                    y = np.clip(py + dy, title_h, title_h + plot - 1)
                    canvas[y, x] = col

    image = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, title_h, plot - 1, title_h + plot - 1], outline=(200, 200, 200))
    title_font, legend_font = _font(22), _font(15)
    draw.text((margin, 10), _fit(title_font, title, plot + legend_w - 2 * margin), fill=INK, font=title_font)
    sizes = np.bincount(labels[(labels >= 0) & (labels < k)], minlength=k) if k > 0 else np.zeros(0, np.int64)
    for i in range(k):
        x0 = plot + margin // 2 + 180 * (i // rows_per_col)
        y0 = title_h + margin + row_h * (i % rows_per_col)
        draw.ellipse([x0, y0 + 4, x0 + 11, y0 + 15], fill=cluster_color(i))
        draw.text((x0 + 18, y0 + 2), _fit(legend_font, f"cluster {i} ({sizes[i]})", 155), fill=INK, font=legend_font)
    return _save_png(image, path)


# --- image grids ------------------------------------------------------------------------------------------------


def _to_rgb(images: np.ndarray) -> np.ndarray:
    """(n, H, W), (n, H, W, 1), (n, H, W, 3) or (n, H, W, 4) -> (n, H, W, 3) uint8."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr[..., :3]


def _tile_size(height: int, width: int) -> tuple[int, int]:
    side = max(height, width)
    if side < MIN_TILE:
        factor = math.ceil(MIN_TILE / side)
        return height * factor, width * factor
    if side > MAX_TILE:
        scale = MAX_TILE / side
        return max(1, round(height * scale)), max(1, round(width * scale))
    return height, width


def _tile(image: np.ndarray, size: tuple[int, int]) -> Image.Image:
    tile = Image.fromarray(image, mode="RGB")
    if (tile.height, tile.width) == size:
        return tile
    # Nearest when enlarging keeps small images crisp; Lanczos when shrinking avoids aliasing.
    method = Image.Resampling.NEAREST if size[0] > tile.height else Image.Resampling.LANCZOS
    return tile.resize((size[1], size[0]), method)


def _grid(images: np.ndarray, captions: Sequence[str] | None, columns: int) -> Image.Image:
    """Images in rows of `columns`, each with an optional caption under it; no title."""
    rgb = _to_rgb(images)
    n = len(rgb)
    th, tw = _tile_size(rgb.shape[1], rgb.shape[2])
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    caption_font = _font(12)
    cap_h = 16 if captions is not None else 0
    grid = Image.new("RGB", (PAD + columns * (tw + PAD), PAD + rows * (th + cap_h + PAD)), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        x = PAD + (i % columns) * (tw + PAD)
        y = PAD + (i // columns) * (th + cap_h + PAD)
        grid.paste(_tile(rgb[i], (th, tw)), (x, y))
        if captions is not None and i < len(captions):
            text = _fit(caption_font, str(captions[i]), tw)
            draw.text(
                (x + (tw - _text_size(caption_font, text)[0]) // 2, y + th + 1), text, fill=MUTED, font=caption_font
            )
    return grid


def _note(text: str, width: int = 320) -> Image.Image:
    """A small grey box with a line of text, standing in for a section without images."""
    font = _font(16)
    image = Image.new("RGB", (width, 40), (245, 245, 245))
    ImageDraw.Draw(image).text((12, 11), _fit(font, text, width - 24), fill=MUTED, font=font)
    return image


def _stack(title: str, sections: Sequence[tuple[str, Image.Image]]) -> Image.Image:
    """A title bar, then each section's label above its picture."""
    title_font, label_font = _font(20), _font(15)
    title_h, label_h, gap = 38, 24, 8
    width = max([max(PAD * 2 + _text_size(title_font, title)[0], 320)] + [im.width for _, im in sections])
    height = title_h + sum((label_h if label else 0) + im.height + gap for label, im in sections)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    draw.rectangle([0, 0, width - 1, title_h - 1], fill=(235, 235, 235))
    draw.text((PAD * 2, 9), _fit(title_font, title, width - PAD * 4), fill=INK, font=title_font)
    y = title_h
    for label, im in sections:
        if label:
            draw.text((PAD * 2, y + 4), _fit(label_font, label, width - PAD * 4), fill=INK, font=label_font)
            y += label_h
        sheet.paste(im, (0, y))
        y += im.height + gap
    return sheet


def contact_sheet(
    images: np.ndarray,
    path: str | Path,
    title: str,
    captions: list[str] | None = None,
    columns: int = 8,
) -> Path:
    """A grid of images (n, S, S, 3) uint8 under a title bar, with an optional caption under each tile.

    Tiles smaller than 64 px are enlarged by an integer factor (nearest neighbour) so 28-px images stay visible;
    tiles above 256 px are shrunk.
    """
    body = _grid(images, captions, columns) if len(images) else _note("no images")
    return _save_png(_stack(title, [("", body)]), path)


def cluster_sheets(
    images_fn: Callable[[np.ndarray], np.ndarray],
    clusters: np.ndarray,
    confidence: np.ndarray,
    k: int,
    out_dir: str | Path,
    per_side: int = 16,
) -> list[Path]:
    """Write `out_dir/cluster_{i:03d}.png` for each cluster: its most and least confident members.

    `images_fn(indices)` returns the images at those dataset indices (uint8), so only 2 * `per_side` images per
    cluster are ever loaded. Captions are the confidences; a cluster no image fell into gets a sheet saying "empty".
    Returns the written paths.
    """
    labels = np.asarray(clusters).astype(np.int64).reshape(-1)
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    if len(labels) != len(conf):
        raise ValueError(f"{len(labels)} cluster labels but {len(conf)} confidences")
    out, written = Path(out_dir), []
    columns = 8
    for i in range(k):
        members = np.flatnonzero(labels == i)
        title = f"cluster {i}: {len(members)} images"
        if len(members) == 0:
            sheet = _stack(title, [("", _note("empty: no image was assigned here"))])
            written.append(_save_png(sheet, out / f"cluster_{i:03d}.png"))
            continue
        mean_conf = float(np.nanmean(conf[members])) if np.isfinite(conf[members]).any() else float("nan")
        title += f", mean confidence {mean_conf:.2f}"
        # NaN confidences sort as least confident; ties keep dataset order (stable sort).
        key = np.nan_to_num(conf[members], nan=-np.inf)
        ranked = members[np.argsort(-key, kind="stable")]
        top = ranked[:per_side]
        rest = ranked[per_side:]
        bottom = rest[::-1][:per_side]  # least confident first, never repeating an image from the top section
        loaded = _to_rgb(images_fn(np.concatenate([top, bottom])))
        sections = [(f"most confident ({len(top)})", _grid(loaded[: len(top)], _captions(conf[top]), columns))]
        if len(bottom):
            sections.append(
                (f"least confident ({len(bottom)})", _grid(loaded[len(top) :], _captions(conf[bottom]), columns))
            )
        else:
            sections.append(("least confident", _note("all members are shown above")))
        written.append(_save_png(_stack(title, sections), out / f"cluster_{i:03d}.png"))
    return written


def _captions(values: np.ndarray) -> list[str]:
    return [f"{v:.2f}" for v in values]


def translation_grid(
    sources: np.ndarray,
    outputs: np.ndarray,
    path: str | Path,
    column_labels: list[str],
) -> Path:
    """The TUNIT-paper figure: source images in the first column, then one column per cluster.

    `sources` is (R, S, S, 3) uint8, `outputs` (R, K, S, S, 3) uint8 with each source translated using cluster
    k's mean style. `column_labels` names all K + 1 columns ("source", "cluster 0", ...); with only K labels,
    "source" is put in front.
    """
    src = _to_rgb(sources)
    out = np.asarray(outputs)
    if out.ndim == 4:  # grayscale (R, K, S, S)
        out = out[..., None]
    if len(out) != len(src):
        raise ValueError(f"{len(src)} source rows but {len(out)} output rows")
    n_rows, k = out.shape[0], out.shape[1]
    labels = list(column_labels)
    if len(labels) == k:
        labels = ["source", *labels]
    labels += [""] * (k + 1 - len(labels))
    th, tw = _tile_size(src.shape[1], src.shape[2])
    split = 10  # extra gap after the source column
    header_h = 26
    width = PAD + (k + 1) * (tw + PAD) + split
    height = header_h + PAD + n_rows * (th + PAD)
    grid = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    font = _font(13 if tw >= 64 else 11)
    for c, label in enumerate(labels[: k + 1]):
        x = PAD + c * (tw + PAD) + (split if c else 0)
        text = _fit(font, label, tw)
        draw.text((x + (tw - _text_size(font, text)[0]) // 2, 6), text, fill=INK, font=font)
    for r in range(n_rows):
        y = header_h + PAD + r * (th + PAD)
        grid.paste(_tile(src[r], (th, tw)), (PAD, y))
        row = _to_rgb(out[r])
        for c in range(k):
            grid.paste(_tile(row[c], (th, tw)), (PAD + (c + 1) * (tw + PAD) + split, y))
    return _save_png(grid, path)


def count_matrix_png(counts: np.ndarray, path: str | Path, title: str, rows_label: str, columns_label: str) -> Path:
    """A (R, C) matrix of counts as a table of shaded cells with their numbers (darker = more)."""
    counts = np.asarray(counts, dtype=np.int64)
    n_rows, n_cols = counts.shape
    cell, margin, font, small = 34, 56, _font(14), _font(11)
    width, height = margin + n_cols * cell + 12, margin + 26 + n_rows * cell + 12
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), _fit(font, title, width - 16), fill="black", font=font)
    draw.text((margin, 26), columns_label, fill="black", font=small)
    draw.text((4, margin + 26 + n_rows * cell // 2), _fit(small, rows_label, margin - 6), fill="black", font=small)
    top = margin + 26
    shade = np.log1p(counts) / max(np.log1p(counts).max(), 1e-9)
    for j in range(n_cols):
        draw.text((margin + j * cell + 10, top - 16), str(j), fill="black", font=small)
    for i in range(n_rows):
        draw.text((margin - 18, top + i * cell + 10), str(i), fill="black", font=small)
        for j in range(n_cols):
            level = int(255 - 200 * shade[i, j])
            box = (margin + j * cell, top + i * cell, margin + (j + 1) * cell - 1, top + (i + 1) * cell - 1)
            draw.rectangle(box, fill=(level, level, 255), outline=(220, 220, 220))
            if counts[i, j]:
                draw.text((box[0] + 4, box[1] + 10), str(counts[i, j]), font=small,
                          fill="white" if level < 128 else "black")
    return _save_png(image, path)
