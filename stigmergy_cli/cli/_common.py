"""What every command needs: the environment it runs in, and the time."""

from __future__ import annotations

import getpass
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from stigmergy_cli import console
from stigmergy_cli.environment import ROOT_ENV_VAR, Environment, open_environment, require_local
from stigmergy_cli.store import Problem

# The flag of every command that can answer programs instead of people.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for programs.")]


@dataclass
class GlobalOptions:
    root: str | None = None


def options(ctx: typer.Context) -> GlobalOptions:
    """The options given before the command name (set by the root callback)."""
    found = ctx.find_object(GlobalOptions)
    return found if found is not None else GlobalOptions()


def open_env(ctx: typer.Context, *, git_backend: bool = False) -> Environment:
    """Open the environment for this invocation (--root, STIGMERGY_ROOT, or the cwd's repo).

    Commands that work with the git backend say so with `git_backend`; the others refuse it
    rather than act on a local pool that agents on other machines never see.
    """
    override = options(ctx).root or os.environ.get(ROOT_ENV_VAR)
    env = open_environment(Path.cwd(), override, os.environ, now())
    if not git_backend:
        require_local(env, f"`{ctx.command_path}`")
    return env


def finite(value: float | None) -> float | None:
    """A typer callback for number options: NaN passes every range check (`min=0` too), and
    no number of seconds or score here means anything infinite."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, not {value}")
    return value


def now() -> float:
    """The current time; the core takes it as an argument and never reads the clock."""
    return time.time()


def whoami() -> str:
    """Who is acting: the agent (STIGMERGY_AGENT, set for executors) or the user."""
    agent = os.environ.get("STIGMERGY_AGENT")
    if agent:
        return agent
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def report_problems(problems: list[Problem], env: Environment) -> None:
    """Name each unreadable file on stderr; the command goes on without them."""
    for problem in problems:
        try:
            where = problem.path.relative_to(env.layout.root)
        except ValueError:
            where = problem.path
        console.warn(f"skipped {where}: {problem.message} (`stigmergy sweep` quarantines it)")
