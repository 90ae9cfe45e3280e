"""Output: rich text for people, one JSON document for programs, one line per error.

rich is imported only when something is rendered for a person, to keep start-up fast.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout: indented for a terminal, compact for a pipe.

    (json's C encoder is used only without indent: four times faster on 10,000 tasks.)
    """
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def error(message: str) -> None:
    """One line on stderr, as every refusal must be."""
    sys.stderr.write(f"error: {_one_line(message)}\n")


def warn(message: str) -> None:
    """A non-fatal problem, one line on stderr."""
    sys.stderr.write(f"warning: {_one_line(message)}\n")


def say(message: str) -> None:
    """A plain line for people on stdout."""
    sys.stdout.write(message + "\n")


_ANSI = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "magenta": "35",
    "cyan": "36",
}


def use_color() -> bool:
    """Color only for a terminal, and never when NO_COLOR is set (no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def width() -> int:
    """Columns available on stdout (COLUMNS, the terminal, or 100 for a pipe)."""
    return shutil.get_terminal_size((100, 24)).columns


def paint(text: str, style: str) -> str:
    """`text` wrapped in the ANSI code for `style` ("" leaves it plain)."""
    code = _ANSI.get(style)
    return f"\x1b[{code}m{text}\x1b[0m" if code else text


BUSY_AT = 500  # items from which a long command shows that it is working


@contextlib.contextmanager
def busy(message: str, *, when: bool = True) -> Iterator[None]:
    """A spinner on stderr while a long step runs, for a person at a terminal only."""
    if not when or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


@functools.cache
def console() -> Console:
    """The rich console for stdout."""
    from rich.console import Console

    return Console(highlight=False)
