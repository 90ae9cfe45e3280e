"""Environment-wide commands: init."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from stigmergy_cli import console
from stigmergy_cli.cli import render
from stigmergy_cli.cli._common import now, open_env, options
from stigmergy_cli.environment import ROOT_ENV_VAR, initialize
from stigmergy_cli.sweep import sweep as run_sweep


def init(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="Branch that agents merge into (default: the branch checked out now).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create .stigmergy/ in this repository. Safe to run again: nothing is overwritten."""
    start = options(ctx).root or os.environ.get(ROOT_ENV_VAR)
    report = initialize(Path(start) if start else Path.cwd(), target, os.environ)
    if as_json:
        console.emit_json(
            {"root": str(report.root), "target": report.target, "created": report.created}
        )
        return
    if not report.changed:
        console.say(f"Already initialized in {report.root} (target {report.target}).")
        return
    console.say(f"Initialized stigmergy in {report.root} (target branch {report.target}).")
    for path in report.created:
        console.say(f"  created {path}")
    console.say('Next: stigmergy task add "Your first task" --priority high')


def sweep(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what it would do; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Give back the tasks of dead agents and repair what crashes left. Safe from cron."""
    env = open_env(ctx)
    report = run_sweep(env.store, env.config, now(), dry_run=dry_run)
    if as_json:
        console.emit_json(report.to_json())
    else:
        render.sweep_report(report)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("init")(init)
    app.command("sweep")(sweep)
