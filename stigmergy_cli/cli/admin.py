"""Environment-wide commands: init."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stigmergy_cli import console, tasks
from stigmergy_cli.cli import render
from stigmergy_cli.cli._common import finite, now, open_env, options
from stigmergy_cli.environment import ROOT_ENV_VAR, initialize

if TYPE_CHECKING:
    from rich.console import RenderableType


def init(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            metavar="BRANCH",
            help="Branch that agents merge into (default: the branch checked out now).",
            show_default=False,
        ),
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(
            "--remote",
            metavar="NAME",
            help="Coordinate through this git remote, for agents on several machines.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create .stigmergy/ in this repository. Safe to run again: nothing is overwritten."""
    start = options(ctx).root or os.environ.get(ROOT_ENV_VAR)
    report = initialize(Path(start) if start else Path.cwd(), target, os.environ, remote)
    if as_json:
        console.emit_json(
            {
                "root": str(report.root),
                "target": report.target,
                "backend": "git" if report.remote else "local",
                "remote": report.remote,
                "created": report.created,
            }
        )
        return
    if not report.changed:
        console.say(f"Already initialized in {report.root} (target {report.target}).")
        return
    console.say(f"Initialized stigmergy in {report.root} (target branch {report.target}).")
    if report.remote:
        console.say(f"  agents coordinate through remote {report.remote!r} (git backend)")
    for path in report.created:
        console.say(f"  created {path}")
    from stigmergy_cli import gitops

    if gitops.rev_parse(report.root, f"refs/heads/{report.target}") is None:
        console.say(
            f"Branch {report.target} has no commit yet, and agents start from its tip: make "
            "one first, e.g. git commit --allow-empty -m 'Initial commit'"
        )
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

    env = open_env(ctx, git_backend=True)
    if env.config.backend == "git":
        from stigmergy_cli.remote_pool import RemotePool

        swept = RemotePool(env.layout, env.config).sweep(now(), dry_run=dry_run)
        if as_json:
            console.emit_json(swept.to_json())
            return
        for action in swept.actions:
            console.say(f"{action.kind} {action.task} ({action.reason})")
        console.say(
            f"{len(swept.actions)} claim(s) broken; {swept.watching} watched "
            f"(a claim is broken once this machine has seen it unchanged for a lease)"
        )
        return
    with console.busy("Sweeping", when=not as_json):
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


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Agents, tasks by state, the ready queue, the pressure map and recent events."""
    from stigmergy_cli import snapshot

    env = open_env(ctx, git_backend=True)
    snap = snapshot.take(env.layout, env.store, env.config, now())
    if as_json:
        console.emit_json(snap.to_json())
    else:
        console.console().print(render.dashboard(snap))


def watch(
    ctx: typer.Context,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            metavar="SECONDS",
            min=0.1,
            callback=finite,
            help="Seconds between refreshes.",
        ),
    ] = 1.0,
) -> None:
    """The status dashboard, refreshed live until Ctrl-C."""
    from rich.live import Live

    from stigmergy_cli import snapshot

    env = open_env(ctx, git_backend=True)
    out = console.console()

    def frame() -> RenderableType:
        return render.dashboard(snapshot.take(env.layout, env.store, env.config, now()))

    try:
        with Live(frame(), console=out, refresh_per_second=4, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(frame())
    except KeyboardInterrupt:
        return  # Ctrl-C is how one leaves a live view: not an error


def log(
    ctx: typer.Context,
    task_id: Annotated[
        str | None, typer.Option("--task", metavar="ID", help="Only this task's events.")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON: an array, or one object per line with --follow.")
    ] = False,
) -> None:
    """The event log: what happened, when, to which task and by which agent."""
    from stigmergy_cli import events

    env = open_env(ctx, git_backend=True)
    if task_id is not None:
        tasks.validate_id(task_id)

    def wanted(event: dict[str, Any]) -> bool:
        return task_id is None or event.get("task") == task_id or event.get("via") == task_id

    shown = [e for e in events.read(env.layout.events) if wanted(e)]
    if as_json and not follow:
        console.emit_json(shown)
        return
    for event in shown:
        console.say(json.dumps(event) if as_json else render.event_line(event))
    if not follow:
        if not shown and not as_json:
            console.say("No events yet.")
        return
    try:
        for event in events.follow(
            env.layout.events,
            start=env.layout.events.stat().st_size if env.layout.events.exists() else 0,
        ):
            if wanted(event):
                console.say(json.dumps(event) if as_json else render.event_line(event))
                sys.stdout.flush()
    except KeyboardInterrupt:
        return


def demo(
    agents: Annotated[
        int, typer.Option("--agents", "-n", metavar="N", min=1, max=32, help="How many agents.")
    ] = 4,
    think: Annotated[
        float,
        typer.Option(
            "--think",
            metavar="SECONDS",
            min=0,
            callback=finite,
            help="Seconds each scripted agent 'thinks' per task.",
        ),
    ] = 0.4,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the sample repository afterwards.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Watch agents build a small package together: the whole loop, no model needed."""
    import shutil
    import tempfile

    from stigmergy_cli import demo as sample
    from stigmergy_cli import snapshot
    from stigmergy_cli.demo_project import PIECES

    python = sample.python_executable()
    root = Path(tempfile.mkdtemp(prefix="stigmergy-demo-")) / "stats"
    try:
        env = sample.create(root, python, now())
        if not as_json:
            console.say(f"Sample project: {root} ({len(PIECES)} tasks, {agents} agents)")
        workers = sample.start_agents(root, agents, python, think)
        live_view = not as_json and sys.stdout.isatty()
        if live_view:
            from rich.live import Live

            def frame() -> RenderableType:
                return render.dashboard(snapshot.take(env.layout, env.store, env.config, now()))

            with Live(frame(), console=console.console(), refresh_per_second=4) as live:
                sample.run_until_done(env, workers, on_tick=lambda: live.update(frame()))
        else:
            sample.run_until_done(env, workers)
        result = sample.report(env, agents, python)
    finally:
        if not keep:
            shutil.rmtree(root.parent, ignore_errors=True)
    if as_json:
        console.emit_json(result.to_json())
    else:
        render.demo_summary(result, kept=keep)
    if result.failed or not result.tests_passed or result.done != result.tasks:
        raise typer.Exit(1)


def decay(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Drop signals that have faded below epsilon and compact the store. Safe from cron."""
    from stigmergy_cli import events, signals

    env = open_env(ctx)
    at = now()
    dropped, kept = signals.Field(env.layout, env.config.pressure).evaporate(at)
    if dropped:
        events.append(env.layout.events, events.DECAYED, at, evaporated=dropped, kept=kept)
    if as_json:
        console.emit_json({"evaporated": dropped, "kept": kept})
    else:
        console.say(
            f"Evaporated {dropped} signals below {env.config.pressure.epsilon:g}; {kept} remain."
        )


def stats(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Throughput, failures, conflicts, timings, agents and the pressure map, from the log."""
    from stigmergy_cli import metrics, snapshot

    env = open_env(ctx)
    at = now()
    m = metrics.collect(env.layout.events)
    snap = snapshot.take(env.layout, env.store, env.config, at)
    if as_json:
        doc = m.to_json()
        doc["tasks"] = snap.counts
        doc["pressure"] = snap.to_json()["pressure"]
        console.emit_json(doc)
    else:
        console.console().print(render.stats(m, snap))


def mcp(ctx: typer.Context) -> None:
    """Serve the pool to interactive agents over the Model Context Protocol (stdio)."""
    from stigmergy_cli import mcp_server

    mcp_server.build(options(ctx).root).run()


def onboard(
    ctx: typer.Context,
    agent: Annotated[
        str,
        typer.Option("--agent", metavar="claude|codex|aider|generic", help="Which agent reads it."),
    ] = "generic",
    write: Annotated[
        bool, typer.Option("--write", help="Add it to CLAUDE.md or AGENTS.md (idempotent).")
    ] = False,
) -> None:
    """The instructions an interactive agent needs to take part, and how to register MCP."""
    from stigmergy_cli import onboard as guide
    from stigmergy_cli.environment import find_root

    text = guide.text(agent)
    if not write:
        console.say(text.rstrip())
        return
    start = options(ctx).root or os.environ.get(ROOT_ENV_VAR)
    root = find_root(Path.cwd(), start)
    path, changed = guide.write(root, agent)
    console.say(f"{'Updated' if changed else 'Already up to date:'} {path}")
    console.say(guide.MCP_SNIPPETS[agent].rstrip())


def register(app: typer.Typer) -> None:
    """Attach these commands to the root app."""
    app.command("init")(init)
    app.command("sweep")(sweep)
    app.command("integrate")(integrate)
    app.command("status")(status)
    app.command("watch")(watch)
    app.command("log")(log)
    app.command("demo")(demo)
    app.command("decay")(decay)
    app.command("stats")(stats)
    app.command("mcp")(mcp)
    app.command("onboard")(onboard)
