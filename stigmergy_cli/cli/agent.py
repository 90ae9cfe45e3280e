"""`stigmergy agent ...`: the agents and their heartbeats."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stigmergy_cli import console, heartbeats, tasks
from stigmergy_cli.cli import render
from stigmergy_cli.cli._common import now, open_env

app = typer.Typer(
    help="See and keep alive the agents working in this repository.", no_args_is_help=True
)


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
) -> None:
    """Every agent with a heartbeat: alive, stale or gone, and what it is doing."""
    env = open_env(ctx)
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
    agent: Annotated[str, typer.Option("--id", help="The agent's id.", show_default=False)],
) -> None:
    """Tell the pool a self-driving agent is still at work (keeps its claim from going stale)."""
    env = open_env(ctx)
    at = now()
    agent = tasks.validate_id(agent, "agent id")
    previous = heartbeats.read(env.layout, agent)
    task = previous.task if previous is not None else None
    heartbeats.touch_session(
        env.layout, agent, role=None, task=task, status="working" if task else "idle", now=at
    )
    console.say(f"{agent}: heartbeat at {at:.0f}" + (f" (working on {task})" if task else ""))
