"""Environment-wide commands: init."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from stigmergy_cli import console, tasks
from stigmergy_cli.cli import render
from stigmergy_cli.cli._common import now, open_env, options
from stigmergy_cli.environment import ROOT_ENV_VAR, initialize


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
    from stigmergy_cli.sweep import sweep as run_sweep

    env = open_env(ctx)
    report = run_sweep(env.store, env.config, now(), dry_run=dry_run)
    if as_json:
        console.emit_json(report.to_json())
    else:
        render.sweep_report(report)


def integrate(
    ctx: typer.Context,
    task_id: Annotated[
        str | None, typer.Argument(help="One task (default: every deferred merge).")
    ] = None,
) -> None:
    """Finish merges that were deferred because the target's checkout had local changes."""
    from stigmergy_cli import merge

    env = open_env(ctx)
    at = now()
    ids = [tasks.validate_id(task_id)] if task_id else merge.deferred(env.store, at)
    if not ids:
        console.say("No merges are waiting.")
        return
    waiting = 0
    for one in ids:
        outcome = merge.finish_deferred(env.store, env.config, one, at)
        if outcome.kind == "deferred":
            waiting += 1
            console.say(f"{one}: still waiting ({outcome.detail})")
        elif outcome.kind == "conflict":
            console.say(f"{one}: conflicts; task {outcome.conflict_task} will resolve it")
        else:
            console.say(f"{one}: merged ({outcome.merge_commit})")
    if waiting:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("init")(init)
    app.command("sweep")(sweep)
    app.command("integrate")(integrate)
