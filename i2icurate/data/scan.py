"""Listing the candidate image files of a folder tree, with a reason for every file that is left out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from i2icurate.data.imageio import IMAGE_EXTENSIONS, is_image_name
from i2icurate.errors import UserError


@dataclass
class Skip:
    """A file left out, with its path relative to the scanned root (posix) and a short reason."""

    path: str
    reason: str


@dataclass
class ScanResult:
    """Candidate image files (relative posix paths, sorted) and everything else that was found but left out."""

    root: Path
    files: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)


def _printable(rel: str) -> str:
    # File names that are not valid UTF-8 arrive as surrogate escapes; show them with \x.. escapes instead.
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _extension_reason(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return f"not an image file (extension {suffix})" if suffix else "not an image file (no extension)"


class _Walker:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.result = ScanResult(root=root)
        self.seen: dict[str, str] = {}  # real path of every folder scanned -> its relative path

    def skip(self, rel: str, reason: str) -> None:
        self.result.skipped.append(Skip(_printable(rel), reason))

    def walk(self, folder: Path, rel: str, ancestors: tuple[str, ...]) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except PermissionError:
            self.skip(rel or ".", "permission denied: cannot list folder")
            return
        except OSError as exc:
            self.skip(rel or ".", f"cannot list folder: {exc.strerror or exc}")
            return
        for entry in entries:
            self.visit(entry, f"{rel}/{entry.name}" if rel else entry.name, ancestors)

    def visit(self, entry: os.DirEntry, rel: str, ancestors: tuple[str, ...]) -> None:
        try:
            is_link = entry.is_symlink()
            if is_link and not os.path.exists(entry.path):
                self.skip(rel, "broken symlink")
            elif entry.name.startswith("."):
                self.skip(rel, "hidden folder (not searched)" if entry.is_dir() else "hidden file")
            elif entry.is_dir():
                self.enter(Path(entry.path), rel, ancestors)
            elif not entry.is_file():
                self.skip(rel, "not a regular file")
            elif not is_image_name(entry.name):
                self.skip(rel, _extension_reason(entry.name))
            elif _printable(rel) != rel:
                self.skip(rel, "file name is not valid UTF-8")
            elif not os.access(entry.path, os.R_OK):
                self.skip(rel, "permission denied")
            else:
                self.result.files.append(rel)
        except PermissionError:
            self.skip(rel, "permission denied")
        except OSError as exc:
            self.skip(rel, f"cannot read: {exc.strerror or exc}")

    def enter(self, folder: Path, rel: str, ancestors: tuple[str, ...]) -> None:
        real = os.path.realpath(folder)
        if real in ancestors:
            raise UserError(f"symlink loop: {self.root / rel} points back to {real} (remove or move that link)")
        if real in self.seen:  # a second link to a folder already scanned would only add exact duplicates
            self.skip(rel, f"folder already scanned as {self.seen[real]}")
            return
        self.seen[real] = rel
        self.walk(folder, rel, (*ancestors, real))


def scan_folder(root: str | Path) -> ScanResult:
    """Recursively list candidate images under `root` (following symlinked folders); read-only.

    Raises UserError for a missing path, a file instead of a folder, a symlink loop, or no candidate images.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"folder not found: {root}")
    if not root.is_dir():
        raise UserError(f"{root} is a file, not a folder; pass the folder that holds your images")
    walker = _Walker(root)
    real = os.path.realpath(root)
    walker.seen[real] = "."
    walker.walk(root, "", (real,))
    result = walker.result
    result.files.sort()
    result.skipped.sort(key=lambda s: s.path)
    if not result.files:
        looked = ", ".join(sorted(IMAGE_EXTENSIONS))
        found = f"; {len(result.skipped)} other entries were skipped" if result.skipped else ""
        raise UserError(f"no images found in {root} (looked for {looked}){found}")
    return result
