"""Helpers for browser tests of the FiftyOne App: serve a dataset on loopback and screenshot it in headless Chromium.

Everything stays on 127.0.0.1: the App server runs in a child Python process that shares the test's isolated
database (``FIFTYONE_DATABASE_DIR`` / ``FIFTYONE_DATABASE_NAME``), and Chromium is started with the flags that
keep it off the (closed) network.
"""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"

# Flags that let Chromium run headless as root on a machine with no network and no GPU.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
)

# The child process that serves the App: load the dataset by name, launch the server, block until killed.
_SERVE_SCRIPT = """
import sys
import fiftyone as fo

name, port = sys.argv[1], int(sys.argv[2])
dataset = fo.load_dataset(name)
session = fo.launch_app(dataset, port=port, address="127.0.0.1", auto=False)
print("serving", session.url, flush=True)
session.wait(-1)
"""


def find_free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout: float = 5.0) -> int | None:
    """The HTTP status ``url`` answers with, or None when nothing answers (refused, reset, timed out)."""
    if not url.startswith(("http://127.0.0.1", "http://localhost")):
        raise ValueError(f"loopback URLs only, got {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only (checked above)
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


def serve_app(dataset_name: str, port: int, env: Mapping[str, str] | None = None,
              timeout: float = 60.0, log_path: str | Path | None = None) -> subprocess.Popen:
    """Start the FiftyOne App for ``dataset_name`` on ``127.0.0.1:port`` in a child process; return once it answers.

    ``env`` is the child's environment (defaults to this process's); ``FIFTYONE_DO_NOT_TRACK=true`` is always set,
    and the database variables should match the caller's so the child sees the same isolated database. The child
    gets its own process group so :func:`stop_app` can end it with everything it started. Raises RuntimeError
    (after stopping the child) if the server is not answering within ``timeout`` seconds or the child exits early.
    """
    child_env = dict(os.environ if env is None else env)
    child_env["FIFTYONE_DO_NOT_TRACK"] = "true"
    log = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL  # closed below, once the child has it
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE_SCRIPT, dataset_name, str(port)],
            env=child_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"App server exited early with code {proc.returncode} (log: {log_path})")
        if http_status(url, timeout=2.0) is not None:
            return proc
        time.sleep(0.5)
    stop_app(proc)
    raise RuntimeError(f"App server on {url} did not answer within {timeout:.0f} s (log: {log_path})")


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) for every process that has not exited, read from /proc (Linux)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):  # zombies have exited already
            table[int(entry)] = (int(fields[1]), fields[19])  # ppid, starttime
    return table


def descendants(pid: int) -> dict[int, str]:
    """pid -> start time for every live descendant of ``pid`` (pass the result to :func:`still_running`)."""
    table = _process_table()
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, start) in table.items():
            if ppid == parent and child not in found:
                found[child] = start
                frontier.append(child)
    return found


def still_running(tree: dict[int, str]) -> list[int]:
    """The pids of ``tree`` (from :func:`descendants`) that are still the same live processes."""
    table = _process_table()
    return [pid for pid, start in tree.items() if pid in table and table[pid][1] == start]


def stop_app(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a server started by :func:`serve_app` and every process under it.

    FiftyOne runs the server behind a service wrapper in a process group of its own, which shuts the server down
    once its parent is gone; so: SIGTERM the child's group, give the wrapper ``timeout`` seconds to finish, then
    SIGKILL whatever is left.
    """
    tree = descendants(proc.pid)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + timeout
    while True:
        alive = still_running(tree)
        if not alive:
            return
        if time.monotonic() > deadline:
            for pid in alive:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        time.sleep(0.2)


def _run_chromium(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run Chromium with the loopback-safe flags and a fresh, throw-away profile; kill its whole group on timeout."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            tail = err.decode(errors="replace")[-2000:]
            raise RuntimeError(f"chromium did not finish within {timeout:.0f} s: {tail}") from None
        finally:
            try:  # helpers (zygote, renderer) left behind by a crashed browser
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def screenshot_cli(url: str, png_path: str | Path, width: int = 1400, height: int = 900, wait_ms: int = 20000,
                   timeout: float = 60.0) -> Path:
    """Plain ``chromium --headless --screenshot`` of ``url`` after a ``wait_ms`` virtual-time budget; returns the path.

    Good for static pages. For the FiftyOne App it is racy: virtual time runs ahead while the page waits on the
    server, so the shot is sometimes the "Pixelating..." loading screen whatever the budget (seen with 15 s and 30 s
    budgets); use :func:`screenshot`, which waits for a real condition, instead.
    """
    png = Path(png_path).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    if png.exists():
        png.unlink()
    result = _run_chromium([f"--window-size={width},{height}", f"--virtual-time-budget={wait_ms}",
                            f"--screenshot={png}", url], timeout)
    if not png.exists():
        raise RuntimeError(f"chromium wrote no screenshot (exit {result.returncode}): "
                           f"{result.stderr.decode(errors='replace')[-2000:]}")
    return png


def dump_dom(url: str, wait_ms: int = 20000, width: int = 1400, height: int = 900, timeout: float = 60.0) -> str:
    """The page's DOM, serialised by ``chromium --headless --dump-dom`` after a ``wait_ms`` virtual-time budget.

    As racy as :func:`screenshot_cli` for the App (the grid may not be in it yet); :attr:`Capture.html` is not.
    """
    result = _run_chromium([f"--window-size={width},{height}", f"--virtual-time-budget={wait_ms}", "--dump-dom", url],
                           timeout)
    return result.stdout.decode(errors="replace")


# ----------------------------------------------------------------------------------------------------------------------
# Chrome DevTools protocol over --remote-debugging-pipe (file descriptors 3 and 4, NUL-separated JSON): no websocket
# package needed, and the page can be prepared (localStorage) and polled until it has really rendered.

# The App's "Explore Enterprise" popover shows once per browser profile; this localStorage key marks it as seen.
APP_INIT_JS = "try { localStorage.setItem('fiftyone-enterprise-tooltip-seen', 'true'); } catch (e) {}"


def app_grid_ready_js(min_tiles: int) -> str:
    """JS expression: the number of sample tiles whose canvas has drawn, once at least ``min_tiles`` have, else 0."""
    return ("(() => { const n = document.querySelectorAll('[data-cy=\"looker\"] canvas[canvas-loaded=\"true\"]')"
            f".length; return n >= {int(min_tiles)} ? n : 0; }})()")


@dataclass
class Capture:
    """What :func:`capture` saw: the PNG, the last value of the readiness expression, the DOM, the seconds it took."""

    path: Path
    ready: Any
    html: str
    seconds: float


class _PipeSession:
    """A minimal Chrome DevTools protocol client over Chromium's debugging pipe."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self._out, self._in = to_browser, from_browser
        self._buffer = b""
        self._next_id = 0

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium over the debugging pipe")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = os.read(self._in, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the debugging pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session_id: str | None = None,
             timeout: float = 30.0) -> dict:
        """Send one command and return its result (events that arrive meanwhile are dropped)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._out, data):]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})


def capture(url: str, png_path: str | Path, width: int = 1400, height: int = 900, wait_ms: int = 30000,
            ready_js: str = "document.readyState === 'complete'", init_js: str | None = None,
            settle_ms: int = 500, timeout: float = 60.0) -> Capture:
    """Open ``url`` in headless Chromium driven over the DevTools pipe, wait until ready, save a PNG screenshot.

    ``init_js`` runs in every new document before the page's own scripts (e.g. :data:`APP_INIT_JS`). ``ready_js``
    is polled every 250 ms, for at most ``wait_ms`` real milliseconds, until it is truthy; the page then gets
    ``settle_ms`` more before a ``width`` x ``height`` screenshot is taken. The screenshot is saved even when the page
    never became ready (``Capture.ready`` is then falsy), so a failing test still leaves something to look at.
    ``timeout`` bounds Chromium's start-up; each later protocol command gets 30 s.
    """
    start = time.monotonic()
    png = Path(png_path).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    cmd_read, cmd_write = os.pipe()  # we write commands, chromium reads them on fd 3
    res_read, res_write = os.pipe()  # chromium writes answers on fd 4, we read them
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        args = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe",
                f"--window-size={width},{height}", "about:blank"]
        # bash moves the pipe ends to the fd numbers chromium expects (no preexec_fn, which is unsafe with threads)
        wrapper = f'exec "$@" 3<&{cmd_read} 4>&{res_write} {cmd_read}<&- {res_write}>&-'
        try:
            proc = subprocess.Popen(["/bin/bash", "-c", wrapper, "chromium", *args], pass_fds=(cmd_read, res_write),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
        except OSError:
            os.close(cmd_write)
            os.close(res_read)
            raise
        finally:
            os.close(cmd_read)
            os.close(res_write)
        try:
            cdp = _PipeSession(cmd_write, res_read)
            targets = cdp.call("Target.getTargets", timeout=timeout)["targetInfos"]
            page = next((t["targetId"] for t in targets if t["type"] == "page"), None)
            if page is None:
                page = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            sid = cdp.call("Target.attachToTarget", {"targetId": page, "flatten": True})["sessionId"]
            cdp.call("Page.enable", session_id=sid)
            cdp.call("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session_id=sid)
            if init_js:
                cdp.call("Page.addScriptToEvaluateOnNewDocument", {"source": init_js}, session_id=sid)
            cdp.call("Page.navigate", {"url": url}, session_id=sid)
            ready: Any = None
            deadline = time.monotonic() + wait_ms / 1000
            while True:
                try:
                    ready = cdp.call("Runtime.evaluate", {"expression": ready_js, "returnByValue": True},
                                     session_id=sid)["result"].get("value")
                except RuntimeError:  # e.g. the context was replaced by the navigation while evaluating
                    ready = None
                if ready or time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            time.sleep(settle_ms / 1000)
            shot = cdp.call("Page.captureScreenshot", {"format": "png"}, session_id=sid)
            png.write_bytes(base64.b64decode(shot["data"]))
            html = cdp.call("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                 "returnByValue": True}, session_id=sid)["result"].get("value", "")
            try:
                cdp.call("Browser.close", timeout=5.0)
                proc.wait(timeout=10.0)
            except (RuntimeError, TimeoutError, subprocess.TimeoutExpired):
                pass
        finally:
            os.close(cmd_write)
            os.close(res_read)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return Capture(png, ready, html, time.monotonic() - start)


def screenshot(url: str, png_path: str | Path, width: int = 1400, height: int = 900, wait_ms: int = 30000,
               ready_js: str = "document.readyState === 'complete'", init_js: str | None = None) -> Path:
    """Screenshot ``url`` once ``ready_js`` holds (see :func:`capture`); returns the PNG path.

    Raises RuntimeError if the page was not ready within ``wait_ms`` (the PNG is still written, to look at).
    """
    shot = capture(url, png_path, width, height, wait_ms=wait_ms, ready_js=ready_js, init_js=init_js)
    if not shot.ready:
        raise RuntimeError(f"{url} was not ready within {wait_ms} ms ({ready_js!r}); see {shot.path}")
    return shot.path


def screenshot_app(url: str, png_path: str | Path, width: int = 1400, height: int = 900, wait_ms: int = 40000,
                   min_tiles: int = 12) -> Capture:
    """Capture a FiftyOne App page once ``min_tiles`` sample tiles have drawn, without the Enterprise popover."""
    return capture(url, png_path, width, height, wait_ms=wait_ms, ready_js=app_grid_ready_js(min_tiles),
                   init_js=APP_INIT_JS)
