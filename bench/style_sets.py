"""Style-domain image sets for the cluster-quality benchmark: the classes differ in how images look, not in what
they show. Built from offline registry material only:

- `typefaces-2` / `typefaces-4`: the same letters and digits drawn in 2 or 4 typefaces (class = typeface), from the
  DejaVu and STIX fonts that matplotlib ships (PyPI `matplotlib`, mpl-data/fonts/ttf);
- `photo-renderings`: crops of scikit-image's bundled sample photos, each crop written three times: as the photo, as a
  pencil sketch (colour-dodge of the grey image by its blurred negative) and posterised with dark outlines
  (class = rendering; the content is exactly shared between classes);
- `openmoji-colour-line`: OpenMoji emoji in colour and as black line-art (npm `openmoji@17.0.0`, rasterised with
  resvg-py; bench/translation_quality.py fetches it), class = rendering; the 28 of 500 emoji whose colour drawing
  is their line-art exactly are left out.

    python bench/style_sets.py typefaces-2 /tmp/sets/typefaces-2      # write one set as class-named folders
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

TYPEFACES = {
    "serif": "DejaVuSerif.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "mono-oblique": "DejaVuSansMono-Oblique.ttf",
    "stix-bold-italic": "STIXGeneralBolIta.ttf",
}
# scikit-image sample photos shipped in its wheel (no download); drawings, charts and binary images left out
PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass", "gravel", "hubble_deep_field",
          "immunohistochemistry", "moon", "page", "retina", "rocket", "text")


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def common_glyphs(paths: list[Path]) -> list[str]:
    """Letters and digits (Unicode categories L* and N*) that every font in `paths` draws, sorted."""
    from fontTools.ttLib import TTFont

    shared = None
    for path in paths:
        codes = set(TTFont(path).getBestCmap())
        shared = codes if shared is None else shared & codes
    chars = [chr(c) for c in sorted(shared or ()) if unicodedata.category(chr(c))[0] in "LN" and c < 0x2000]
    return [c for c in chars if not unicodedata.combining(c)]


def draw_glyph(char: str, font: ImageFont.FreeTypeFont, size: int) -> Image.Image:
    """`char` in black on white, centred on its ink box, size x size px."""
    canvas = Image.new("L", (size * 2, size * 2), 255)
    draw = ImageDraw.Draw(canvas)
    box = draw.textbbox((0, 0), char, font=font)
    w, h = box[2] - box[0], box[3] - box[1]
    draw.text(((size * 2 - w) / 2 - box[0], (size * 2 - h) / 2 - box[1]), char, font=font, fill=0)
    return canvas.crop((size // 2, size // 2, size // 2 + size, size // 2 + size))


def write_typefaces(dest: Path, n_faces: int, size: int = 64, max_glyphs: int = 400) -> int:
    """`dest/<typeface>/<codepoint>.png` for the first `n_faces` typefaces; returns images written per class."""
    faces = dict(list(TYPEFACES.items())[:n_faces])
    paths = [_font_dir() / f for f in faces.values()]
    chars = common_glyphs(paths)
    if len(chars) > max_glyphs:  # evenly spread over the shared repertoire (Latin, Greek, Cyrillic, digits)
        chars = [chars[i] for i in np.linspace(0, len(chars) - 1, max_glyphs).round().astype(int)]
    for name, path in zip(faces, paths, strict=True):
        font = ImageFont.truetype(str(path), int(size * 0.62))
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        for char in chars:
            draw_glyph(char, font, size).save(folder / f"u{ord(char):04x}.png")
    return len(chars)


def _load_photo(name: str) -> Image.Image:
    import skimage.data

    array = getattr(skimage.data, name)()
    if array.dtype != np.uint8:
        array = (255 * (array - array.min()) / max(1e-8, float(array.max() - array.min()))).astype(np.uint8)
    return Image.fromarray(array).convert("RGB")


def pencil_sketch(img: Image.Image) -> Image.Image:
    """Colour-dodge of the grey image by its blurred negative: dark strokes where the photo has edges."""
    grey = np.asarray(ImageOps.grayscale(img), dtype=np.float32)
    blurred = np.asarray(Image.fromarray(255 - grey.astype(np.uint8)).filter(ImageFilter.GaussianBlur(3)),
                         dtype=np.float32)
    sketch = np.clip(grey * 255.0 / np.maximum(1.0, 255.0 - blurred), 0, 255).astype(np.uint8)
    return Image.fromarray(sketch).convert("RGB")


def posterise_outline(img: Image.Image) -> Image.Image:
    """Flat colour (3 levels per channel after a smoothing filter) with dark outlines: a cartoon rendering."""
    flat = ImageOps.posterize(img.filter(ImageFilter.ModeFilter(5)), 2)
    edges = np.asarray(ImageOps.grayscale(img).filter(ImageFilter.FIND_EDGES), dtype=np.float32)
    out = np.asarray(flat, dtype=np.float32)
    out[edges > 40] *= 0.2
    return Image.fromarray(out.astype(np.uint8))


RENDERINGS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "photo": lambda img: img, "pencil": pencil_sketch, "poster": posterise_outline,
}


def write_renderings(dest: Path, size: int = 64, crop: int = 96, per_photo: int = 30, seed: int = 0) -> int:
    """`per_photo` random crops of each sample photo, each written once per rendering; returns images per class."""
    rng = np.random.default_rng(seed)
    n = 0
    for name in PHOTOS:
        photo = _load_photo(name)
        scale = 320 / min(photo.size)  # a common scale, so a crop covers a similar share of every photo
        photo = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.LANCZOS)
        for i in range(per_photo):
            x, y = rng.integers(0, photo.width - crop + 1), rng.integers(0, photo.height - crop + 1)
            piece = photo.crop((int(x), int(y), int(x) + crop, int(y) + crop))
            for rendering, render in RENDERINGS.items():
                folder = dest / rendering
                folder.mkdir(parents=True, exist_ok=True)
                render(piece).resize((size, size), Image.LANCZOS).save(folder / f"{name}_{i:02d}.png")
            n += 1
    return n


def drop_identical_pairs(dest: Path, folders: tuple[str, str], names: list[str], tolerance: float = 1e-3) -> list[str]:
    """Delete every pair `dest/<folder>/<name>.png` whose two images are the same picture (mean absolute difference
    below `tolerance` on a 0-1 scale); returns the names kept.

    Such a pair puts one image in two classes, which caps any clustering's accuracy below 1 for no reason of style.
    """
    kept = []
    for name in names:
        files = [dest / folder / f"{name}.png" for folder in folders]
        a, b = (np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255.0 for f in files)
        if a.shape == b.shape and float(np.abs(a - b).mean()) < tolerance:
            for f in files:
                f.unlink()
        else:
            kept.append(name)
    return kept


def write_openmoji(dest: Path, n: int = 500, size: int = 64) -> int:
    """The paired emoji among n that differ between `dest/colour/` and `dest/line/` (needs npm once and resvg-py).

    About 6 % of OpenMoji's colour drawings are black and white only and rasterise to exactly their line-art; those
    pairs are left out (see drop_identical_pairs).
    """
    from translation_quality import COLOUR, LINE, prepare_openmoji

    return len(drop_identical_pairs(dest, (COLOUR, LINE), prepare_openmoji(dest, n, size)))


STYLE_SETS: dict[str, Callable[[Path], int]] = {
    "typefaces-2": lambda dest: write_typefaces(dest, 2),
    "typefaces-4": lambda dest: write_typefaces(dest, 4),
    "photo-renderings": write_renderings,
    "openmoji-colour-line": write_openmoji,
}


def write_style_set(name: str, dest: str | Path) -> Path:
    """Write the style-domain set `name` as class-named folders under `dest` (reused when already there)."""
    dest = Path(dest)
    if not (dest / ".complete").is_file():
        STYLE_SETS[name](dest)
        (dest / ".complete").write_text("")
    return dest


@click.command()
@click.argument("name", type=click.Choice(sorted(STYLE_SETS)))
@click.argument("dest", type=click.Path(file_okay=False))
def main(name: str, dest: str) -> None:
    """Write one style-domain set as class-named folders."""
    out = write_style_set(name, dest)
    counts = {d.name: len(list(d.glob("*.png"))) for d in sorted(out.iterdir()) if d.is_dir()}
    click.echo(f"{out}: {counts}")


if __name__ == "__main__":
    main()
