"""Decoding single files of every mode and kind of damage, built from real animal-mnist images."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from i2icurate.data.imageio import IMAGE_EXTENSIONS, ImageSkip, decode_to_array, load_rgb, to_rgb

MAX = 100_000_000


def real_gray(folder: Path, n: int) -> np.ndarray:
    """The n-th real 28x28 silhouette (sorted file order)."""
    return np.asarray(Image.open(sorted(folder.rglob("*.png"))[n]))


@pytest.fixture(scope="module")
def real_rgb(animal_folder) -> Image.Image:
    """A real 64x48 RGB picture: three different silhouettes as its three channels."""
    channels = np.stack([real_gray(animal_folder, n) for n in (0, 25, 70)], axis=-1)
    return Image.fromarray(channels).resize((64, 48), Image.Resampling.BICUBIC)


def crafted_png(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header claims width x height but which holds almost no data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def reason(path: Path, max_pixels: int = MAX) -> str:
    with pytest.raises(ImageSkip) as info:
        load_rgb(path, max_pixels)
    assert "\n" not in info.value.reason
    return info.value.reason


def test_extensions_are_lowercase_suffixes():
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"} == IMAGE_EXTENSIONS


def test_decode_to_array_is_square_uint8(tmp_path, real_rgb):
    real_rgb.save(tmp_path / "a.png")
    out = decode_to_array(tmp_path / "a.png", 32, MAX)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    expected = np.asarray(real_rgb.resize((32, 32), Image.Resampling.BICUBIC))
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert np.array_equal(decode_to_array(io.BytesIO((tmp_path / "a.png").read_bytes()), 32, MAX), out)


def test_gray_l_becomes_equal_channels(tmp_path, animal_folder):
    gray = real_gray(animal_folder, 3)
    Image.fromarray(gray, mode="L").save(tmp_path / "l.png")
    out = np.asarray(load_rgb(tmp_path / "l.png", MAX))
    assert out.shape == (28, 28, 3)
    assert all(np.array_equal(out[..., c], gray) for c in range(3))


def test_bilevel_mode_1(tmp_path, animal_folder):
    Image.fromarray(real_gray(animal_folder, 4) > 127).save(tmp_path / "b.png")
    out = load_rgb(tmp_path / "b.png", MAX)
    assert out.mode == "RGB" and set(np.unique(np.asarray(out))) <= {0, 255}


def test_rgba_transparent_pixels_become_white(tmp_path, real_rgb):
    alpha = np.full((48, 64), 255, np.uint8)
    alpha[:, :10] = 0
    rgba = real_rgb.copy()
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "rgba.png")
    out = np.asarray(load_rgb(tmp_path / "rgba.png", MAX))
    assert (out[:, :10] == 255).all()
    assert np.array_equal(out[:, 10:], np.asarray(real_rgb)[:, 10:])


def test_la_transparent_pixels_become_white(tmp_path, animal_folder):
    gray = real_gray(animal_folder, 5)
    alpha = np.where(gray > 0, 255, 0).astype(np.uint8)
    Image.fromarray(np.stack([gray, alpha], -1), mode="LA").save(tmp_path / "la.png")
    out = np.asarray(load_rgb(tmp_path / "la.png", MAX))
    assert out.dtype == np.uint8 and out.shape == (28, 28, 3)
    assert (out[alpha == 0] == 255).all()
    assert np.array_equal(out[alpha == 255][:, 0], gray[alpha == 255])


def test_palette_with_transparency_becomes_white(tmp_path, animal_folder):
    gray = real_gray(animal_folder, 6)
    pal = Image.fromarray(gray, mode="L").convert("P")
    index = int(np.asarray(pal)[0, 0])  # the background colour's palette index
    pal.save(tmp_path / "p.png", transparency=index)
    assert "transparency" in Image.open(tmp_path / "p.png").info
    out = np.asarray(load_rgb(tmp_path / "p.png", MAX))
    transparent = np.asarray(pal) == index
    assert transparent.any() and (out[transparent] == 255).all()
    assert (out[~transparent] < 255).any()


def test_cmyk_converts_to_rgb(tmp_path, real_rgb):
    cmyk = real_rgb.convert("CMYK")
    cmyk.save(tmp_path / "c.tif")
    out = load_rgb(tmp_path / "c.tif", MAX)
    assert out.mode == "RGB" and np.array_equal(np.asarray(out), np.asarray(cmyk.convert("RGB")))


def test_sixteen_bit_scaled_by_depth(tmp_path, animal_folder):
    gray = real_gray(animal_folder, 7)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "16.png")
    assert Image.open(tmp_path / "16.png").mode.startswith("I")
    out = np.asarray(load_rgb(tmp_path / "16.png", MAX))
    assert out.dtype == np.uint8 and np.array_equal(out[..., 1], gray)


def test_int32_and_float_modes(animal_folder):
    gray = real_gray(animal_folder, 8)
    small_ints = to_rgb(Image.fromarray(gray.astype(np.int32), mode="I"))
    assert np.array_equal(np.asarray(small_ints)[..., 0], gray)
    wide_ints = to_rgb(Image.fromarray(gray.astype(np.int32) * 257, mode="I"))
    assert np.array_equal(np.asarray(wide_ints)[..., 0], gray)
    unit_floats = to_rgb(Image.fromarray(gray.astype(np.float32) / 255, mode="F"))
    assert np.abs(np.asarray(unit_floats)[..., 0].astype(int) - gray).max() <= 1
    byte_floats = to_rgb(Image.fromarray(gray.astype(np.float32) + 0.2, mode="F"))
    assert np.array_equal(np.asarray(byte_floats)[..., 2], gray)


@pytest.mark.parametrize("mode", ["YCbCr", "LAB", "HSV"])
def test_colour_spaces_convert_back(real_rgb, mode):
    out = to_rgb(real_rgb.convert(mode))
    assert out.mode == "RGB" and out.size == real_rgb.size


def test_exif_orientation_is_applied(tmp_path, real_rgb):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    real_rgb.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    real_rgb.save(tmp_path / "plain.jpg", quality=95)
    out = load_rgb(tmp_path / "rotated.jpg", MAX)
    assert out.size == (48, 64)
    expected = np.asarray(load_rgb(tmp_path / "plain.jpg", MAX).transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(np.asarray(out), expected)


def test_animated_gif_uses_first_frame(tmp_path, animal_folder):
    frames = [Image.fromarray(real_gray(animal_folder, n), mode="L").convert("P") for n in (30, 90)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    out = np.asarray(load_rgb(tmp_path / "anim.gif", MAX))
    assert np.array_equal(out[..., 0], real_gray(animal_folder, 30))


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert reason(tmp_path / "empty.png") == "empty file (0 bytes)"


def test_text_renamed_jpg(tmp_path):
    (tmp_path / "notes.jpg").write_text("shopping list: milk, eggs\n")
    assert reason(tmp_path / "notes.jpg") == "not an image: cannot identify image file"


def test_truncated_jpeg(tmp_path, real_rgb):
    real_rgb.save(tmp_path / "full.jpg", quality=95)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    assert reason(tmp_path / "half.jpg").startswith("truncated or corrupt: image file is truncated")


def test_huge_header_rejected_before_decoding(tmp_path, monkeypatch):
    (tmp_path / "bomb.png").write_bytes(crafted_png(60000, 60000))
    limit = Image.MAX_IMAGE_PIXELS

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert reason(tmp_path / "bomb.png") == "too large: 60000x60000 pixels exceeds --max-pixels 100000000"
    assert Image.MAX_IMAGE_PIXELS == limit  # PIL's global guard is restored


def test_max_pixels_applies_to_real_images(tmp_path, animal_folder):
    Image.fromarray(real_gray(animal_folder, 9)).save(tmp_path / "small.png")
    assert reason(tmp_path / "small.png", max_pixels=700) == "too large: 28x28 pixels exceeds --max-pixels 700"
    assert load_rgb(tmp_path / "small.png", 784).size == (28, 28)


def test_missing_file_is_a_skip_not_a_traceback(tmp_path):
    assert reason(tmp_path / "gone.png").startswith("file not found")
