"""The decode-once cache over a folder of real animal-mnist images mixed with damaged and duplicate files."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i2icurate.data import cache as cache_module
from i2icurate.data.cache import CacheResult, array_file, build_cache, index_file, load_cache
from i2icurate.data.imageio import decode_to_array
from i2icurate.data.scan import scan_folder
from i2icurate.errors import UserError

SIZE = 16
MAX = 100_000_000


def crafted_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but which holds almost no data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def expected_hash(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def listing(root: Path) -> dict[str, str]:
    """Every file under root with the sha1 of its bytes."""
    return {p.relative_to(root).as_posix(): expected_hash(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def corpus(tmp_path, animal_folder) -> Path:
    """24 real PNGs in 3 class folders, a byte-identical copy, and damaged files of every kind."""
    root = tmp_path / "photos"
    pngs = sorted(animal_folder.rglob("*.png"))
    for src in pngs[0:8] + pngs[20:28] + pngs[40:48]:
        dest = root / src.parent.name / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    shutil.copy(pngs[0], root / "bear" / "copy_of_first.png")
    rgb = Image.open(pngs[60]).convert("RGB").resize((40, 30))
    rgb.save(root / "cat.jpg", quality=95)
    data = (root / "cat.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "letter.jpg").write_text("Dear reader, this is not a picture.\n")
    (root / "bomb.png").write_bytes(crafted_png(60000, 60000))
    (root / "notes.txt").write_text("not an image")
    return root


def test_build_cache_keeps_good_skips_bad_marks_duplicates(corpus, tmp_path):
    before = listing(corpus)
    scan = scan_folder(corpus)
    assert {s.path: s.reason for s in scan.skipped} == {"notes.txt": "not an image file (extension .txt)"}
    calls: list[tuple[int, int]] = []
    cache_dir = tmp_path / "cache"
    result = build_cache(corpus, scan.files, SIZE, cache_dir, 1, MAX, progress=lambda d, t: calls.append((d, t)))

    reasons = {s.path: s.reason for s in result.skipped}
    assert set(reasons) == {"cut.jpg", "empty.png", "letter.jpg", "bomb.png"}
    assert reasons["cut.jpg"].startswith("truncated or corrupt: ") and "truncated" in reasons["cut.jpg"].lower()
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert reasons["letter.jpg"].startswith("not an image: cannot identify image file")
    assert reasons["bomb.png"] == "too large: 60000x60000 pixels exceeds --max-pixels 100000000"

    assert result.paths == [p for p in scan.files if p not in reasons]
    assert len(result.paths) == 26
    first = result.paths.index("bear/bear_0000.png")
    copy = result.paths.index("bear/copy_of_first.png")
    assert result.duplicate_of[copy] == "bear/bear_0000.png" and result.duplicate_of[first] == ""
    first_with: dict[str, str] = {}  # animal-mnist itself holds a few byte-identical images, e.g. cat_0004/cat_0007
    expected = []
    for path in result.paths:
        digest = expected_hash(corpus / path)
        expected.append(first_with.setdefault(digest, path) if digest in first_with else "")
        first_with.setdefault(digest, path)
    assert result.duplicate_of == expected
    assert result.hashes[copy] == result.hashes[first] == expected_hash(corpus / "bear/bear_0000.png")
    assert result.sizes[result.paths.index("cat.jpg")] == (40, 30) and result.sizes[first] == (28, 28)

    images = load_cache(result, SIZE)
    assert images.shape == (26, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert result.array_path.stat().st_size == images.offset + images.nbytes  # shrunk past the 4 skipped rows
    for row, path in enumerate(result.paths):
        assert np.array_equal(images[row], decode_to_array(corpus / path, SIZE, MAX))
    assert result.array_path == array_file(tmp_path / "cache", SIZE) and index_file(tmp_path / "cache", SIZE).is_file()
    assert sorted(os.listdir(tmp_path / "cache")) == [f"images_{SIZE}.npy", f"index_{SIZE}.json"]  # no temp left
    assert len(scan.files) == 30 and calls == [(done, 30) for done in range(1, 31)]
    assert listing(corpus) == before


def test_second_build_reuses_without_decoding(corpus, tmp_path, monkeypatch):
    files = scan_folder(corpus).files
    first = build_cache(corpus, files, SIZE, tmp_path / "cache", 1, MAX)
    mtime = first.array_path.stat().st_mtime_ns

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_module, "_decode_chunk", no_decoding)
    again = build_cache(corpus, files, SIZE, tmp_path / "cache", 1, MAX)
    assert again == first and first.array_path.stat().st_mtime_ns == mtime
    assert np.array_equal(load_cache(tmp_path / "cache", SIZE), load_cache(first, SIZE))


def test_changed_file_or_size_rebuilds(corpus, tmp_path, animal_folder):
    files = scan_folder(corpus).files
    build_cache(corpus, files, SIZE, tmp_path / "cache", 1, MAX)
    replacement = sorted(animal_folder.rglob("*.png"))[150]
    shutil.copy(replacement, corpus / "bear" / "bear_0003.png")
    rebuilt = build_cache(corpus, files, SIZE, tmp_path / "cache", 1, MAX)
    row = rebuilt.paths.index("bear/bear_0003.png")
    assert np.array_equal(load_cache(rebuilt, SIZE)[row], decode_to_array(replacement, SIZE, MAX))
    bigger = build_cache(corpus, files, 24, tmp_path / "cache", 1, MAX)
    assert load_cache(bigger, 24).shape == (26, 24, 24, 3) and load_cache(tmp_path / "cache", SIZE).shape[1] == SIZE


def test_two_workers_match_one(animal_folder, tmp_path):
    files = scan_folder(animal_folder).files
    serial = build_cache(animal_folder, files, SIZE, tmp_path / "one", 1, MAX)
    parallel = build_cache(animal_folder, files, SIZE, tmp_path / "two", 2, MAX)
    assert parallel.paths == serial.paths == files and parallel.hashes == serial.hashes
    assert np.array_equal(load_cache(parallel, SIZE), load_cache(serial, SIZE))


def test_cache_is_read_only(corpus, tmp_path):
    result = build_cache(corpus, scan_folder(corpus).files, SIZE, tmp_path / "cache", 1, MAX)
    with pytest.raises(ValueError):
        load_cache(result, SIZE)[0, 0, 0, 0] = 1


def test_nothing_decodable_is_one_line_error(corpus, tmp_path):
    with pytest.raises(UserError) as info:
        build_cache(corpus, ["empty.png", "letter.jpg"], SIZE, tmp_path / "cache", 1, MAX)
    assert str(info.value).startswith("none of the 2 image files") and "\n" not in str(info.value)
    assert not array_file(tmp_path / "cache", SIZE).exists() and os.listdir(tmp_path / "cache") == []


def test_missing_cache_is_one_line_error(tmp_path):
    with pytest.raises(UserError, match="image cache not found"):
        load_cache(tmp_path, SIZE)


def test_cache_result_fields(corpus, tmp_path):
    result = build_cache(corpus, ["bear/bear_0000.png"], SIZE, tmp_path / "cache", 1, MAX)
    assert result == CacheResult(
        paths=["bear/bear_0000.png"],
        hashes=[expected_hash(corpus / "bear/bear_0000.png")],
        sizes=[(28, 28)],
        duplicate_of=[""],
        skipped=[],
        array_path=array_file(tmp_path / "cache", SIZE),
    )
