"""`stigmergy agent ...`: the agents and their heartbeats."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stigmergy_cli import console, heartbeats, tasks
from stigmergy_cli.cli import render
from stigmergy_cli.cli._common import JsonFlag, finite, now, open_env
from stigmergy_cli.errors import EXIT_INTERRUPTED

if TYPE_CHECKING:
    from stigmergy_cli.agent_loop import Agent

# Commands that need git, worktrees or the agent loop import them when they run: every
# command pays for what is imported here, and `task list` must start in well under 150 ms.

app = typer.Typer(
    help="See and keep alive the agents working in this repository.", no_args_is_help=True
)


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: JsonFlag = False,
) -> None:
    """Every agent with a heartbeat: alive, stale or gone, and what it is doing."""
    env = open_env(ctx, git_backend=True)
    at = now()
    rows: list[dict[str, Any]] = []
    for info in heartbeats.list_agents(env.layout):
        beat = info.beat
        if beat is None:
            rows.append({"agent": info.agent, "state": "unreadable", "problem": info.problem})
            continue
        lease = env.config.session_lease if beat.kind == "session" else env.config.lease
        rows.append(
            {
                "agent": beat.agent,
                "state": heartbeats.liveness(beat, at, lease),
                "status": beat.status,
                "task": beat.task,
                "role": beat.role,
                "kind": beat.kind,
                "host": beat.host,
                "pid": beat.pid,
                "started": beat.started,
                "last_seen": beat.last_seen,
                "seconds_since_seen": round(at - beat.last_seen, 3),
                "done": beat.done,
                "failed": beat.failed,
            }
        )
    if as_json:
        console.emit_json(rows)
    else:
        render.agent_table(rows)


@app.command("heartbeat")
def heartbeat(
    ctx: typer.Context,
    *,
    agent: Annotated[
        str, typer.Option("--id", metavar="ID", help="The agent's id.", show_default=False)
    ],
) -> None:
    """Tell the pool a self-driving agent is still at work (keeps its claim from going stale)."""
    from stigmergy_cli import sessions

    at = now()
    beat = sessions.heartbeat(open_env(ctx, git_backend=True), agent, at)
    console.say(
        f"{beat.agent}: heartbeat at {at:.0f}" + (f" (working on {beat.task})" if beat.task else "")
    )


@app.command("run")
def run(
    ctx: typer.Context,
    *,
    agent: Annotated[
        str, typer.Option("--id", metavar="ID", help="This agent's id.", show_default=False)
    ],
    command: Annotated[
        str | None,
        typer.Option(
            "--exec", metavar="CMD", help="Executor run with /bin/sh -c in the agent's worktree."
        ),
    ] = None,
    role: Annotated[
        str | None, typer.Option("--role", metavar="ROLE", help="Take tasks of this role.")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Do at most one task, then exit.")] = False,
    max_tasks: Annotated[
        int | None,
        typer.Option("--max-tasks", metavar="N", min=1, help="Exit after this many tasks."),
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option(
            "--idle-exit",
            metavar="SECONDS",
            min=0,
            callback=finite,
            help="Exit after this many seconds with nothing to do.",
        ),
    ] = None,
    wake_threshold: Annotated[
        float | None,
        typer.Option(
            "--wake-threshold",
            metavar="SCORE",
            min=0,
            callback=finite,
            help="Work only on tasks scoring at least this.",
        ),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Do not echo executor output.")
    ] = False,
) -> None:
    """Run an agent: claim, work in its worktree, verify, commit, merge, repeat."""
    from stigmergy_cli import executor
    from stigmergy_cli.agent_loop import Agent, AgentOptions

    env = open_env(ctx, git_backend=True)
    agent = tasks.validate_id(agent, "agent id")
    if role is not None:
        tasks.validate_name(role, "role")
    if command is not None:
        command = executor.resolve(command, Path.cwd(), env.layout.root)
    options = AgentOptions(agent, command, role, once, max_tasks, idle_exit, wake_threshold)
    tag = f"[{agent}]"
    loop = Agent(
        env,
        options,
        say=lambda line: console.say(f"{tag} {line}"),
        on_output=None if quiet else lambda line: console.say(f"{tag} | {line}"),
    )
    if loop.command is None:
        console.warn(
            f"agent {agent!r} has no executor (--exec or agent.command in config.yaml): "
            "it will only take tasks that bring their own `command`"
        )
    try:
        with _stop_on_signals(loop):
            loop.run()
    finally:
        summary = loop.summary
        console.say(
            f"{tag} stopped: {summary.done} done, {summary.failed} failed, "
            f"{summary.conflicts} conflicts, {summary.given_back} given back"
        )


@contextlib.contextmanager
def _stop_on_signals(loop: Agent) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish cleanly (task given back). Second: exit at once."""
    received = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            console.warn("stopping: the task in hand goes back to the pool (again to exit at once)")
            loop.request_stop()
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if received:
        raise typer.Exit(EXIT_INTERRUPTED)


@app.command("workspace")
def workspace(
    ctx: typer.Context,
    *,
    agent: Annotated[
        str, typer.Option("--id", metavar="ID", help="The agent's id.", show_default=False)
    ],
) -> None:
    """Print the agent's worktree, creating it if needed (for agents that drive themselves)."""
    from stigmergy_cli import worktrees

    env = open_env(ctx, git_backend=True)
    agent = tasks.validate_id(agent, "agent id")
    console.say(str(worktrees.ensure(env.layout, agent, env.config.target)))


@app.command("prune")
def prune(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")
    ] = False,
) -> None:
    """Remove the worktrees and branches of agents that are gone; unmerged work is kept first."""
    from stigmergy_cli import gitops, locks, results, worktrees
    from stigmergy_cli.oslock import is_locked

    env = open_env(ctx, git_backend=True)
    at = now()
    beats = {a.agent: a.beat for a in heartbeats.list_agents(env.layout)}
    holders = {i.owner.agent for i in locks.list_locks(env.layout) if i.owner}
    tip = gitops.rev_parse(env.layout.root, f"refs/heads/{env.config.target}")
    pruned = 0
    for agent in worktrees.agents_with_worktrees(env.layout):
        beat = beats.get(agent)
        lease = env.config.session_lease if beat and beat.kind == "session" else env.config.lease
        running = is_locked(env.layout.agent_lock(agent))  # its `agent run`, on this machine
        if (
            running
            or agent in holders
            or (beat is not None and heartbeats.liveness(beat, at, lease) == heartbeats.ALIVE)
        ):
            console.say(f"{agent}: kept (alive or holding a claim)")
            continue
        pruned += 1
        if dry_run:
            console.say(f"{agent}: would remove {env.layout.workspace(agent)}")
            continue
        kept = results.save_leftovers(
            env.layout, env.layout.workspace(agent), f"{agent}/pruned", tip, at
        )
        worktrees.remove(env.layout, agent)
        console.say(f"{agent}: removed" + (f"; unmerged work kept at {kept}" if kept else ""))
    if not pruned:
        console.say("No worktree to prune.")
