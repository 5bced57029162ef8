"""Square brackets in paths, option values and advice reach the terminal as typed, not eaten as console markup."""

from __future__ import annotations

import pytest
from rich.console import Console

from i2icurate.markup import bold, escape
from tests.cli_helpers import cli


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    monkeypatch.setenv("COLUMNS", "500")  # long temporary paths stay on one line of captured output


def test_errors_keep_brackets(tmp_path, capsys):
    code, _, err = cli(capsys, "discover", str(tmp_path / "photos[cpu]"), "--project", str(tmp_path / "runs"))
    assert code == 2 and err.strip() == f"error: image folder not found: {tmp_path / 'photos[cpu]'}"


def test_escape_and_bold_keep_user_text():
    console = Console(width=200, force_terminal=False)
    advice = "pip install 'x[cpu]'"
    with console.capture() as captured:
        console.print(f"run folder: {bold('runs[gpu]/discover/exp1')}; advice: {escape(advice)}")
    assert captured.get().strip() == "run folder: runs[gpu]/discover/exp1; advice: pip install 'x[cpu]'"
