"""Commands run without typer, in the exact argument forms programs give them.

`stigmergy --version`, and `task import`: importing typer and building its commands is over
a third of an import of 100 tasks (about 120 ms of 400 on a two-core machine), and an import
is on the critical path of every idle agent waiting for its tasks. Anything else, including
`--help`, a typo, or an option not parsed here, goes to typer, which owns the usage and its
errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence


def command(args: Sequence[str]) -> Callable[[], None] | None:
    """What to run for `args` without typer, or None to leave them to typer."""
    rest = list(args)
    if rest == ["--version"]:
        from stigmergy_cli import __version__, console

        return functools.partial(console.say, f"stigmergy {__version__}")
    root: str | None = None
    if len(rest) >= 2 and rest[0] == "--root":
        root, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--root="):
        root, rest = rest[0].removeprefix("--root="), rest[1:]
    if rest[:2] != ["task", "import"]:
        return None
    operands = rest[2:]
    sources = [a for a in operands if a != "--json"]
    if len(sources) != 1 or len(operands) - len(sources) > 1:
        return None
    (source,) = sources
    if source.startswith("-") and source != "-":  # an option typer would have to judge
        return None
    from stigmergy_cli.cli import task_import

    return functools.partial(task_import.run, root, source, as_json="--json" in operands)
