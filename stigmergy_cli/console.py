"""Output: rich text for people, one JSON document for programs, one line per error.

rich is imported only when something is rendered for a person, to keep start-up fast.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def emit_json(obj: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


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


@functools.cache
def console() -> Console:
    """The rich console for stdout."""
    from rich.console import Console

    return Console(highlight=False)
