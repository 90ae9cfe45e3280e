"""What a command needs before it acts, without typer: the environment, the time, who acts.

The commands that run without typer (`cli/fastpath.py`) use this directly; the typer
commands reach it through `cli/_common.py`.
"""

from __future__ import annotations

import getpass
import os
import time
from dataclasses import dataclass
from pathlib import Path

from stigmergy_cli.environment import ROOT_ENV_VAR, Environment, open_environment, require_local


@dataclass
class GlobalOptions:
    """The options given before the command name."""

    root: str | None = None


def open_env(root: str | None, command: str, *, git_backend: bool = False) -> Environment:
    """Open the environment for this invocation (`root`, STIGMERGY_ROOT, or the cwd's repo).

    Commands that work with the git backend say so with `git_backend`; the others refuse it
    rather than act on a local pool that agents on other machines never see.
    """
    env = open_environment(Path.cwd(), root or os.environ.get(ROOT_ENV_VAR), os.environ, now())
    if not git_backend:
        require_local(env, f"`{command}`")
    return env


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
