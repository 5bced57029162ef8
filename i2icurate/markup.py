"""Putting user text (paths, option values, labels) into rich console markup without it being read as markup.

rich reads `[word]` as a style tag and drops it: `pip install 'i2icurate[cpu]'` printed as `pip install 'i2icurate'`,
and a folder named `shots[raw]` lost its brackets. Every value interpolated into a markup string goes through
`escape` (or `bold`); messages without markup are printed with `markup=False`.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape as _escape


def escape(value: Any) -> str:
    """`str(value)` with every `[` that rich could take for a tag escaped."""
    return _escape(str(value))


def bold(value: Any) -> str:
    """`value` in bold, its own brackets kept."""
    return f"[bold]{escape(value)}[/]"
