"""What every typer command needs: its global options and environment, shared flags."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from stigmergy_cli import console
from stigmergy_cli.cli import invocation
from stigmergy_cli.cli.invocation import GlobalOptions, now, whoami
from stigmergy_cli.environment import Environment
from stigmergy_cli.store import Problem

__all__ = [
    "GlobalOptions",
    "JsonFlag",
    "finite",
    "now",
    "open_env",
    "options",
    "report_problems",
    "whoami",
]

# The flag of every command that can answer programs instead of people.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for programs.")]


def options(ctx: typer.Context) -> GlobalOptions:
    """The options given before the command name (set by the root callback)."""
    found = ctx.find_object(GlobalOptions)
    return found if found is not None else GlobalOptions()


def open_env(ctx: typer.Context, *, git_backend: bool = False) -> Environment:
    """Open the environment for this invocation (see `invocation.open_env`)."""
    return invocation.open_env(options(ctx).root, ctx.command_path, git_backend=git_backend)


def finite(value: float | None) -> float | None:
    """A typer callback for number options: NaN passes every range check (`min=0` too), and
    no number of seconds or score here means anything infinite."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, not {value}")
    return value


def report_problems(problems: list[Problem], env: Environment) -> None:
    """Name each unreadable file on stderr; the command goes on without them."""
    for problem in problems:
        try:
            where = problem.path.relative_to(env.layout.root)
        except ValueError:
            where = problem.path
        console.warn(f"skipped {where}: {problem.message} (`stigmergy sweep` quarantines it)")
