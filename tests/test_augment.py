"""Per-sample augmentation of real images: ranges, determinism and that the two views really differ."""

import numpy as np
import torch
from PIL import Image

from i2icurate.data.augment import (
    AugmentSpec,
    colour_jitter,
    diff_augment,
    from_signed_u8,
    positive_pair,
    random_affine,
    random_crops,
    to_unit,
)


def _batch(folder, n=8, size=32):
    paths = sorted(folder.rglob("*.png"))[:: max(1, 200 // n)][:n]
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size))) for p in paths]
    return torch.from_numpy(np.stack(arrays))


def test_positive_pair_shapes_ranges_and_determinism(animal_folder):
    u8 = _batch(animal_folder)
    x1, a1 = positive_pair(u8, torch.Generator().manual_seed(3))
    x2, a2 = positive_pair(u8, torch.Generator().manual_seed(3))
    assert x1.shape == a1.shape == (8, 3, 32, 32)
    assert torch.equal(x1, x2) and torch.equal(a1, a2)
    for t in (x1, a1):
        assert t.min() >= -1 and t.max() <= 1
    # x is the image or its mirror; x+ is a genuinely different view
    src = u8.permute(0, 3, 1, 2).float() / 127.5 - 1
    for i in range(8):
        assert torch.allclose(x1[i], src[i], atol=1e-5) or torch.allclose(x1[i], src[i].flip(-1), atol=1e-5)
    assert (a1 - x1).abs().mean() > 0.05


def test_identity_ranges_leave_images_unchanged(animal_folder):
    unit = to_unit(_batch(animal_folder))
    none = AugmentSpec(degrees=0, translate=0, shear=0, scale=(1, 1), ratio=(1, 1), brightness=0, contrast=0,
                       saturation=0, hue=0)
    gen = torch.Generator().manual_seed(0)
    out = colour_jitter(unit, gen, none)
    assert torch.allclose(out, unit, atol=1e-5)
    moved = random_affine(unit, gen, none)
    # only a possible horizontal flip remains
    for i in range(len(unit)):
        assert torch.allclose(moved[i], unit[i], atol=1e-4) or torch.allclose(moved[i], unit[i].flip(-1), atol=1e-4)


def test_views_differ_per_sample(animal_folder):
    u8 = _batch(animal_folder)[:1].repeat(6, 1, 1, 1)  # one image six times
    _, aug = positive_pair(u8, torch.Generator().manual_seed(1))
    diffs = [(aug[0] - aug[i]).abs().mean().item() for i in range(1, 6)]
    assert min(diffs) > 1e-3  # each copy drew its own parameters


def test_u8_round_trip(animal_folder):
    u8 = _batch(animal_folder)
    signed = u8.permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(from_signed_u8(signed), u8)


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """image moved so that out[y, x] = image[y + dy, x + dx], zero where that falls outside."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        image[:, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    return out


def test_diff_augment_translation_is_a_whole_pixel_shift(animal_folder):
    x = to_unit(_batch(animal_folder)) * 2 - 1
    out = diff_augment(x, torch.Generator().manual_seed(0), translation=0.125, cutout=0.0)
    for i in range(len(x)):  # each image is one of the shifts of at most 4 px (1/8 of 32), found exactly
        shifts = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)]
        matches = [s for s in shifts if torch.equal(out[i], _shifted(x[i], *s))]
        assert matches, f"image {i} is not a shift of its input"
    assert not torch.equal(out, x)


def test_diff_augment_cutout_zeroes_one_square_and_passes_gradients(animal_folder):
    x = (to_unit(_batch(animal_folder)) * 2 - 1).requires_grad_(True)
    out = diff_augment(x, torch.Generator().manual_seed(1), translation=0.0, cutout=0.5)
    cut = (out == 0).all(1) & (x != 0).any(1)  # pixels the cutout set to zero
    for i in range(len(x)):
        rows, cols = torch.nonzero(cut[i], as_tuple=True)
        assert len(rows) > 0
        # one axis-aligned square of at most half the side (smaller where it crosses the border)
        assert rows.max() - rows.min() < 16 and cols.max() - cols.min() < 16
        kept = ~(out[i] == 0).all(0)
        assert torch.equal(out[i][:, kept], x[i][:, kept])
    out.sum().backward()
    assert torch.equal(x.grad != 0, out != 0)  # gradient 1 where kept, 0 where cut (no input pixel is exactly 0)
    same = diff_augment(x, torch.Generator().manual_seed(1), translation=0.0, cutout=0.5)
    assert torch.equal(out, same)


def test_random_crops_are_windows_of_their_own_image_at_positions_drawn_per_sample(animal_folder):
    x = to_unit(_batch(animal_folder, n=8, size=32)) * 2 - 1
    crops = random_crops(x, 16, torch.Generator().manual_seed(0))
    assert crops.shape == (8, 3, 16, 16)
    found = []
    for i in range(len(x)):  # each crop is found exactly in its own image
        at = [(t, s) for t in range(17) for s in range(17) if torch.equal(crops[i], x[i, :, t:t + 16, s:s + 16])]
        assert at, f"crop {i} is not a window of its image"
        found.append(at[0])
    assert len(set(found)) > 1  # not one position for the whole batch
    assert torch.equal(crops, random_crops(x, 16, torch.Generator().manual_seed(0)))
    assert random_crops(x, 32, torch.Generator()) is x  # a crop the image's size leaves it whole
