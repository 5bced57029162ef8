"""Decoding one image file of any common format and mode into an RGB image, or a short reason it was skipped."""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})

Source = str | os.PathLike | BinaryIO
_OPEN_LOCK = threading.Lock()


class ImageSkip(Exception):
    """An image file that cannot be used; `reason` is a short human phrase for the skip report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _byte_size(source: Source) -> int:
    if isinstance(source, (str, os.PathLike)):
        return os.stat(source).st_size
    if isinstance(source, io.BytesIO):
        return source.getbuffer().nbytes
    pos = source.tell()
    size = source.seek(0, io.SEEK_END)
    source.seek(pos)
    return size


def _open_unchecked(source: Source) -> Image.Image:
    """`Image.open` without PIL's decompression-bomb check, so that `--max-pixels` (checked next) is the limit."""
    with _OPEN_LOCK:  # MAX_IMAGE_PIXELS is a PIL global; opening reads only the header, so the lock is brief
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _message(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _composite_on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _int_to_rgb(img: Image.Image) -> Image.Image:
    arr = np.asarray(img)
    wide = arr.astype(np.int64)
    if img.mode.startswith("I;16"):
        out = np.clip(wide, 0, 65535) >> 8
    else:  # mode I (32-bit): values above 255 mean the file really holds 16-bit samples
        out = np.clip(wide >> 8 if wide.size and wide.max() > 255 else wide, 0, 255)
    return Image.fromarray(out.astype(np.uint8), mode="L").convert("RGB")


def _float_to_rgb(img: Image.Image) -> Image.Image:
    arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    if not (arr.size and arr.max() > 1.0):
        arr = arr * 255.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L").convert("RGB")


def _oriented(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a malformed EXIF block leaves the pixels as stored rather than losing them."""
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001
        return img.copy()  # a copy: the caller closes `img`


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image of any PIL mode to 8-bit RGB; transparency is composited over white."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in ("LA", "La", "RGBA", "RGBa", "PA") or "transparency" in img.info:
        return _composite_on_white(img)
    if mode.startswith("I;16") or mode == "I":
        return _int_to_rgb(img)
    if mode == "F":
        return _float_to_rgb(img)
    return img.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV, RGBX


def load_rgb(path: Source, max_pixels: int) -> Image.Image:
    """Open, size-check (from the header, before decoding), orient and fully decode one image as RGB.

    Raises ImageSkip with a short reason for anything that is not a usable image; never another exception.
    """
    try:
        if _byte_size(path) == 0:
            raise ImageSkip("empty file (0 bytes)")
        with _open_unchecked(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageSkip(f"too large: {width}x{height} pixels exceeds --max-pixels {max_pixels}")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            with warnings.catch_warnings():  # PIL re-checks frames and tiles while decoding
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()
            return to_rgb(_oriented(img))
    except ImageSkip:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageSkip(f"too large: {_message(exc)}") from None
    except UnidentifiedImageError:  # no format recognised the bytes; anything else is a recognised but broken file
        raise ImageSkip("not an image: cannot identify image file") from None
    except PermissionError:
        raise ImageSkip("permission denied") from None
    except FileNotFoundError:
        raise ImageSkip("file not found (removed while running?)") from None
    except OSError as exc:
        if exc.errno is None:  # PIL's own parse errors are OSErrors without an errno
            raise ImageSkip(f"truncated or corrupt: {_message(exc)}") from None
        raise ImageSkip(f"cannot read: {exc.strerror or _message(exc)}") from None
    except MemoryError:
        raise ImageSkip("too large: out of memory while decoding") from None
    except Exception as exc:  # noqa: BLE001 - PIL plugins raise many types on bad files; none may escape
        raise ImageSkip(f"truncated or corrupt: {_message(exc)}") from None


def resize_square(img: Image.Image, size: int) -> np.ndarray:
    """Resize to exactly size x size (aspect ratio not kept, like TUNIT's Resize((S, S))) as a uint8 array."""
    resized = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8))


def decode_with_size(path: Source, size: int, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode to a (size, size, 3) uint8 array and also return the oriented original (width, height)."""
    img = load_rgb(path, max_pixels)
    try:
        return resize_square(img, size), img.size
    except MemoryError:
        raise ImageSkip("too large: out of memory while resizing") from None
    except Exception as exc:  # noqa: BLE001
        raise ImageSkip(f"truncated or corrupt: {_message(exc)}") from None


def decode_to_array(path: Source, size: int, max_pixels: int) -> np.ndarray:
    """Decode one image file into a (size, size, 3) uint8 array; raises ImageSkip for unusable files."""
    return decode_with_size(path, size, max_pixels)[0]


def is_image_name(name: str | Path) -> bool:
    """Whether a file name has one of the image extensions (case-insensitive)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def spread_indices(n: int, k: int) -> np.ndarray:
    """Up to `k` sorted, distinct indices spread evenly over range(n), the first and last included (rounded)."""
    return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


def median_side(root: str | Path, files: list[str], sample: int = 256) -> int | None:
    """The median shorter side, in pixels, of up to `sample` of `files` (relative to `root`, spread evenly over the
    list), read from the image headers alone; None where none could be read. Unreadable files are left to the
    decode, which records them as skipped."""
    if not files:
        return None
    sides = []
    for i in spread_indices(len(files), sample):
        try:
            with _open_unchecked(Path(root) / files[i]) as img:  # the header only, with no pixel-count warning
                sides.append(min(img.size))
        except (OSError, UnidentifiedImageError, ValueError):
            continue
    return int(np.median(sides)) if sides else None
