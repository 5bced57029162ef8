"""Optional ground-truth labels for evaluation only: from class sub-folders or from a `path,label` CSV."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from i2icurate.errors import UserError


def folder_labels(paths: Sequence[str]) -> list[str]:
    """The top-level class folder of each relative path: "cat/0001.png" and "cat/2020/0002.png" -> "cat"."""
    labels = []
    for path in paths:
        parts = PurePosixPath(path).parts
        label = parts[0] if len(parts) > 1 else ""
        if not label:
            raise UserError(f"folder labels need class sub-folders, but {path} is directly in the scanned folder")
        labels.append(label)
    return labels


def _normalize(path: str) -> str:
    path = path.strip().replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


def csv_labels(csv_path: str | Path, paths: Sequence[str]) -> list[str]:
    """Labels for `paths` from a CSV with columns path,label (paths relative to the scanned folder); "" if absent."""
    csv_path = Path(csv_path)
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in reader.fieldnames or []]
            if "path" not in columns or "label" not in columns:
                found = ", ".join(columns) or "none"
                raise UserError(f"labels CSV {csv_path} needs the columns path,label (found: {found})")
            reader.fieldnames = columns
            by_path: dict[str, str] = {}
            for row in reader:
                path, label = _normalize(row.get("path") or ""), (row.get("label") or "").strip()
                if path in by_path and by_path[path] != label:
                    raise UserError(f"labels CSV {csv_path} gives {path} two labels: {by_path[path]!r} and {label!r}")
                by_path[path] = label
    except FileNotFoundError:
        raise UserError(f"labels CSV not found: {csv_path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read labels CSV {csv_path}: {' '.join(str(exc).split())}") from None
    return [by_path.get(path, "") for path in paths]


def load_eval_labels(spec: str, paths: Sequence[str]) -> list[str] | None:
    """Evaluation labels from a `--labels` value: "" for none, "folders" for class sub-folders, else a CSV path."""
    if not spec:
        return None
    if spec == "folders":
        return folder_labels(paths)
    return csv_labels(spec, paths)
