"""Import FiftyOne with the tool's defaults: no telemetry, quiet database checks, and the review plugin installed.

FiftyOne reads most of its configuration from the environment when it is imported, and the App server and the
database run in child processes that inherit the environment, so the defaults are set in `os.environ` first.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from types import ModuleType

from i2icurate.errors import UserError

PLUGIN_DIR = Path(__file__).resolve().parent / "plugin"
PLUGIN_NAME = "@i2icurate/review"
# The folder name of our plugin inside the merged plugins folder (see `_merged_plugins_dir`).
_LINK_NAME = "i2icurate-review"


def import_fiftyone() -> ModuleType:
    """Import and return `fiftyone` with the tool's defaults, its database reachable, and the review plugin found.

    A missing package or a database that cannot start becomes a one-line `UserError`.
    """
    os.environ["FIFTYONE_DO_NOT_TRACK"] = "true"
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    try:
        import fiftyone as fo
    except ImportError as exc:
        if exc.name == "fiftyone":
            raise UserError("FiftyOne is not installed: run `pip install fiftyone` to review clusters") from None
        raise UserError(f"FiftyOne could not be imported: {exc}") from None
    fo.config.do_not_track = True  # in case fiftyone was imported before the environment was set
    _install_plugin(fo)
    _check_database(fo)
    return fo


def _check_database(fo: ModuleType) -> None:
    """Connect now, so that a database problem is one clear line instead of a traceback later."""
    try:
        fo.list_datasets()
    except Exception as exc:  # FiftyOne raises many types here (service timeout, config, pymongo, OS errors)
        reason = " ".join(str(exc).split()) or type(exc).__name__
        hint = ("check FIFTYONE_DATABASE_URI" if fo.config.database_uri
                else "set FIFTYONE_DATABASE_URI to use your own MongoDB")
        raise UserError(f"FiftyOne's database could not start: {reason} ({hint})") from None


def _install_plugin(fo: ModuleType) -> None:
    """Make the review plugin discoverable without touching the user's own plugins folder.

    FiftyOne scans one plugins folder (`FIFTYONE_PLUGINS_DIR`, following symlinks), so we point it at a small folder
    of links: one to our plugin and one to the user's previous plugins folder, which keeps their plugins working.
    """
    current = Path(fo.config.plugins_dir).expanduser() if fo.config.plugins_dir else None
    if current is not None and (current / _LINK_NAME).resolve() == PLUGIN_DIR:
        return  # already done in this process (or the user points at a folder we made)
    merged = _merged_plugins_dir(current)
    os.environ["FIFTYONE_PLUGINS_DIR"] = str(merged)  # read by the App server, a child process
    fo.config.plugins_dir = str(merged)


def _merged_plugins_dir(user_dir: Path | None) -> Path:
    """A folder (in the temp dir, one per user and previous plugins folder) linking our plugin and the user's."""
    key = hashlib.sha1(f"{PLUGIN_DIR}|{user_dir}".encode()).hexdigest()[:8]
    merged = Path(tempfile.gettempdir()) / f"i2icurate-fiftyone-plugins-{_uid()}-{key}"
    merged.mkdir(mode=0o700, exist_ok=True)
    _link(merged / _LINK_NAME, PLUGIN_DIR)
    if user_dir is not None and user_dir.is_dir():
        _link(merged / "user-plugins", user_dir.resolve())
    return merged


def _uid() -> int:
    return os.getuid() if hasattr(os, "getuid") else 0


def _link(link: Path, target: Path) -> None:
    """Point `link` at `target`, replacing a stale link in one step (safe when two processes race)."""
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp, target_is_directory=True)
    os.replace(tmp, link)
