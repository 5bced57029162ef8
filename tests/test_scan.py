"""Scanning folders (real animal-mnist PNGs mixed with junk, links and loops) and reading evaluation labels."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from i2icurate.data.labels import csv_labels, folder_labels, load_eval_labels
from i2icurate.data.scan import ScanResult, Skip, scan_folder
from i2icurate.errors import UserError


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under root (links not followed) with the sha1 of its bytes or its link target."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha1(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir" if path.is_dir() else "other"
    return out


def one_line_error(root: Path) -> str:
    with pytest.raises(UserError) as info:
        scan_folder(root)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def mixed(tmp_path, animal_folder) -> Path:
    """Real PNGs in class folders plus every kind of entry a scan must report instead of silently dropping."""
    root = tmp_path / "photos"
    pngs = sorted(animal_folder.rglob("*.png"))
    for src in pngs[:3] + pngs[20:22]:
        dest = root / src.parent.name / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    shutil.copy(pngs[40], root / "TOP.PNG")
    (root / "bear" / "notes.txt").write_text("field notes")
    (root / "README").write_text("no extension")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / ".thumbs").mkdir()
    shutil.copy(pngs[41], root / ".thumbs" / "t.png")
    (root / "gone.png").symlink_to(root / "nowhere.png")
    (root / "bird_link").symlink_to(root / "bird", target_is_directory=True)
    extra = tmp_path / "elsewhere"
    extra.mkdir()
    shutil.copy(pngs[60], extra / "cat_outside.jpg")
    (root / "linked").symlink_to(extra, target_is_directory=True)
    os.mkfifo(root / "pipe.jpg")
    return root


def test_real_folder_is_listed_sorted(animal_folder):
    before = snapshot(animal_folder)
    result = scan_folder(animal_folder)
    assert isinstance(result, ScanResult) and result.root == animal_folder
    assert len(result.files) == 200 and result.skipped == []
    assert result.files == sorted(result.files) and result.files[0] == "bear/bear_0000.png"
    assert snapshot(animal_folder) == before


def test_mixed_folder_reports_every_skip(mixed):
    before = snapshot(mixed)
    result = scan_folder(mixed)
    assert result.files == [
        "TOP.PNG",
        "bear/bear_0000.png",
        "bear/bear_0001.png",
        "bear/bear_0002.png",
        "bird/bird_0000.png",
        "bird/bird_0001.png",
        "linked/cat_outside.jpg",
    ]
    reasons = {s.path: s.reason for s in result.skipped}
    assert reasons == {
        ".DS_Store": "hidden file",
        ".thumbs": "hidden folder (not searched)",
        "README": "not an image file (no extension)",
        "bear/notes.txt": "not an image file (extension .txt)",
        "bird_link": "folder already scanned as bird",
        "gone.png": "broken symlink",
        "pipe.jpg": "not a regular file",
    }
    assert all(isinstance(s, Skip) for s in result.skipped)
    assert snapshot(mixed) == before


def test_symlink_loop_is_one_line_error(tmp_path, animal_folder):
    root = tmp_path / "looped"
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy(next(animal_folder.rglob("*.png")), root / "a" / "x.png")
    (root / "a" / "b" / "back").symlink_to(root / "a", target_is_directory=True)
    message = one_line_error(root)
    assert message.startswith("symlink loop: ") and "a/b/back" in message and "points back to" in message


def test_link_to_root_is_a_loop(tmp_path, animal_folder):
    shutil.copy(next(animal_folder.rglob("*.png")), tmp_path / "x.png")
    (tmp_path / "self").symlink_to(tmp_path, target_is_directory=True)
    assert one_line_error(tmp_path).startswith("symlink loop: ")


def test_empty_and_imageless_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    assert one_line_error(tmp_path / "empty").startswith(f"no images found in {tmp_path / 'empty'} (looked for .bmp")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("text")
    message = one_line_error(tmp_path / "docs")
    assert message.startswith("no images found") and "1 other entries were skipped" in message


def test_missing_path_and_file_instead_of_folder(tmp_path, animal_folder):
    assert one_line_error(tmp_path / "nope").startswith("folder not found")
    assert "is a file, not a folder" in one_line_error(next(animal_folder.rglob("*.png")))


def test_unreadable_folder_is_a_skip(mixed, monkeypatch):
    (mixed / "locked").mkdir()
    real_scandir = os.scandir

    def scandir(path):
        # chmod 0 does not stop root (CI runs as root), so the refusal comes from here instead
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    reasons = {s.path: s.reason for s in scan_folder(mixed).skipped}
    assert reasons["locked"] == "permission denied: cannot list folder"


def test_folder_labels(animal_folder):
    files = scan_folder(animal_folder).files
    labels = folder_labels(files)
    assert labels[0] == "bear" and len(set(labels)) == 10
    assert load_eval_labels("folders", files) == labels
    assert load_eval_labels("", files) is None
    with pytest.raises(UserError, match="class sub-folders"):
        folder_labels(["top.png"])
    assert folder_labels(["cat/2020/a.png", "dog/b.png"]) == ["cat", "dog"]


def test_csv_labels(tmp_path):
    (tmp_path / "labels.csv").write_text("\ufeffpath,label\n./a/x.png,cat\nb\\y.png,dog\n", encoding="utf-8")
    assert csv_labels(tmp_path / "labels.csv", ["a/x.png", "b/y.png", "c/z.png"]) == ["cat", "dog", ""]
    assert load_eval_labels(str(tmp_path / "labels.csv"), ["b/y.png"]) == ["dog"]
    (tmp_path / "bad.csv").write_text("file,class\na.png,cat\n")
    with pytest.raises(UserError, match="needs the columns path,label"):
        csv_labels(tmp_path / "bad.csv", ["a.png"])
    with pytest.raises(UserError, match="not found"):
        csv_labels(tmp_path / "missing.csv", ["a.png"])
