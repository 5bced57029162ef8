"""Batched inference of a trained guiding network and generator over the decoded image cache.

`embed_to_npy` streams the class probabilities and style codes of any number of images into `.npy` files with
bounded host memory: uint8 batches are read from the cache file by a background thread into reused (pinned, on CUDA)
buffers, the network runs under bf16 autocast in channels-last format on CUDA, and each batch's outputs are written
into memory-mapped arrays at temporary paths that are renamed into place once complete.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

from i2icurate.data.augment import from_signed_u8, signed_from_u8
from i2icurate.engines.tunit import autocast_dtype
from i2icurate.export.spans import row_spans
from i2icurate.runs import atomic_path

# (first row, probabilities (B, K), style codes (B, D)) of one batch
EmbeddedBatch = tuple[int, np.ndarray, np.ndarray]


@contextlib.contextmanager
def atomic_memmap(path: str | Path, shape: tuple[int, ...], dtype: type = np.float32) -> Iterator[np.memmap]:
    """A writable `.npy` memmap at a temporary path beside `path`, flushed and renamed into place on success."""
    with atomic_path(path) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        yield array
        array.flush()
        del array  # unmap before the rename


def _whole_file_memmap(images: np.ndarray) -> bool:
    """Whether `images` is a complete C-ordered memmap of a file (as `np.load(mmap_mode="r")` returns)."""
    return (
        isinstance(images, np.memmap)
        and isinstance(images.base, mmap.mmap)
        and images.flags.c_contiguous
        and bool(images.filename)
    )


class RowReader:
    """Copies rows start..stop of an (N, ...) uint8 array into a caller's buffer.

    A memmapped cache file is read with plain file reads rather than through the mapping: pages touched through a
    mapping stay resident in this process (its RSS would grow to the whole cache, 49 GB for 1 M images at 128 px),
    while read() goes through the page cache only, and copies straight into the (pinned) batch buffer.
    """

    def __init__(self, images: np.ndarray) -> None:
        self.images = images
        self.row_bytes = int(np.prod(images.shape[1:])) * images.dtype.itemsize
        self._fd: int | None = None
        if _whole_file_memmap(images) and hasattr(os, "preadv"):  # preadv: not on Windows
            self._fd = os.open(images.filename, os.O_RDONLY)
            self._offset = int(images.offset)

    def read(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Fill `out[: stop - start]` with the rows and return that view."""
        view = out[: stop - start]
        if self._fd is None or view.dtype != self.images.dtype:
            view[...] = self.images[start:stop]
            return view
        target = memoryview(view.reshape(-1)).cast("B")
        position, done = self._offset + start * self.row_bytes, 0
        while done < len(target):
            got = os.preadv(self._fd, [target[done:]], position + done)
            if got <= 0:
                raise OSError(f"unexpected end of {self.images.filename} at byte {position + done}")
            done += got
        return view

    def close(self) -> None:
        """Close the cache file (when one was opened)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


class _Outputs:
    """Device-to-host copies of one batch's outputs, into pinned buffers on CUDA so they do not stall the GPU."""

    def __init__(self, start: int, probs: torch.Tensor, styles: torch.Tensor, cuda: bool) -> None:
        self.start = start
        if not cuda:
            self.probs, self.styles, self.event = probs, styles, None
            return
        self.probs = torch.empty(probs.shape, dtype=probs.dtype, pin_memory=True)
        self.styles = torch.empty(styles.shape, dtype=styles.dtype, pin_memory=True)
        self.probs.copy_(probs, non_blocking=True)
        self.styles.copy_(styles, non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record()

    def wait(self) -> None:
        """Block until the copies (and so everything queued on the device before them) have finished."""
        if self.event is not None:
            self.event.synchronize()

    def result(self) -> EmbeddedBatch:
        self.wait()
        return self.start, self.probs.numpy(), self.styles.numpy()


def iter_embeddings(
    guiding: nn.Module,
    images: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
    precision: str = "auto",
    channels_last: bool | None = None,
) -> Iterator[EmbeddedBatch]:
    """Yield (start, probabilities, style codes) for consecutive batches of `images` (N, S, S, 3) uint8.

    The next batch is read on a background thread while the current one runs; on CUDA the outputs of a batch are
    handed over only after the next batch has been queued, so the GPU never waits for the caller.
    `precision` as the run option (auto = bf16 autocast on CUDA, fp32 elsewhere); `channels_last` None = on CUDA.
    """
    cuda = device.type == "cuda"
    amp_dtype = autocast_dtype(precision, device)
    channels_last = cuda if channels_last is None else channels_last
    guiding.eval()
    if channels_last:
        guiding.to(memory_format=torch.channels_last)
    spans = row_spans(len(images), batch_size)
    # Two host buffers: one being filled by the reader thread while the other is copied to the device.
    buffers = [torch.empty((batch_size, *images.shape[1:]), dtype=torch.uint8, pin_memory=cuda) for _ in range(2)]
    reader = RowReader(images)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="i2icurate-embed")

    def load(i: int) -> Future[torch.Tensor]:
        start, stop = spans[i]
        return pool.submit(lambda: torch.from_numpy(reader.read(start, stop, buffers[i % 2].numpy())))

    try:
        pending: _Outputs | None = None
        future = load(0) if spans else None
        for i, (start, _) in enumerate(spans):
            assert future is not None
            host = future.result()
            with torch.no_grad(), _autocast(device, amp_dtype):
                # NHWC permuted to NCHW is already channels-last in memory; .float() keeps that layout
                x = host.to(device, non_blocking=True).permute(0, 3, 1, 2).float() / 127.5 - 1
                logits, style = guiding(x)
            outputs = _Outputs(start, torch.softmax(logits.float(), dim=1), style.float(), cuda)
            if pending is not None:
                pending.wait()  # the previous batch is done, so its host buffer may be refilled
            future = load(i + 1) if i + 1 < len(spans) else None
            if pending is not None:
                yield pending.result()
            pending = outputs
        if pending is not None:
            yield pending.result()
    finally:
        pool.shutdown(wait=True)
        reader.close()


def embed(
    guiding: nn.Module,
    images: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
    precision: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, K) and style codes (N, D) of every image, in order, held in memory (small inputs)."""
    probs, styles = [], []
    for start, p, s in iter_embeddings(guiding, images, device, batch_size, precision):
        probs.append(p)
        styles.append(s)
        if progress is not None:
            progress(start + len(p))
    return np.concatenate(probs).astype(np.float32), np.concatenate(styles).astype(np.float32)


def embed_to_npy(
    guiding: nn.Module,
    images: np.ndarray,
    device: torch.device,
    probs_path: str | Path,
    styles_path: str | Path,
    batch_size: int = 256,
    progress: Callable[[int], None] | None = None,
    precision: str = "auto",
    channels_last: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Stream probabilities (N, K) and style codes (N, D) float32 into two `.npy` files; return them memmapped.

    Both files are written batch by batch into memmaps at temporary paths and renamed into place when complete,
    so host memory stays bounded by a couple of batches whatever N is.
    """
    n = len(images)
    batches = iter_embeddings(guiding, images, device, batch_size, precision, channels_last)
    with contextlib.ExitStack() as stack:
        start, p, s = next(batches)
        probs = stack.enter_context(atomic_memmap(probs_path, (n, p.shape[1])))
        styles = stack.enter_context(atomic_memmap(styles_path, (n, s.shape[1])))
        while True:
            probs[start : start + len(p)] = p
            styles[start : start + len(s)] = s
            if progress is not None:
                progress(start + len(p))
            try:
                start, p, s = next(batches)
            except StopIteration:
                break
        del probs, styles
    return np.load(probs_path, mmap_mode="r"), np.load(styles_path, mmap_mode="r")


@torch.no_grad()
def translate_to_styles(
    generator: nn.Module, sources: np.ndarray, styles: np.ndarray, device: torch.device
) -> np.ndarray:
    """Translate each source (R, S, S, 3) uint8 with each style (K, D): returns (R, K, S, S, 3) uint8."""
    generator.eval()
    x = signed_from_u8(sources, device)
    content = generator.encode(x)
    style = torch.from_numpy(styles).to(device)
    rows = []
    for r in range(len(sources)):
        c = content[r : r + 1].expand(len(styles), *content.shape[1:])
        rows.append(from_signed_u8(generator.decode(c, style)).cpu().numpy())
    return np.stack(rows)
