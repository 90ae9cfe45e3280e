"""`stigmergy lock list`: the claims and whether each is still live."""

from __future__ import annotations

from typing import Any

import typer

from stigmergy_cli import console, defaults, heartbeats, locks
from stigmergy_cli.cli import render
from stigmergy_cli.cli._common import JsonFlag, now, open_env

app = typer.Typer(help="Inspect claim locks.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: JsonFlag = False,
) -> None:
    """Every claim: who holds it, since when, and whether the sweep would break it."""
    from stigmergy_cli.sweep import stale_reason

    env = open_env(ctx)
    at = now()
    beats = {a.agent: a.beat for a in heartbeats.list_agents(env.layout) if a.beat}
    rows: list[dict[str, Any]] = []
    for info in locks.list_locks(env.layout):
        owner = info.owner
        beat = beats.get(owner.agent) if owner else None
        stale = stale_reason(info, beat, at, defaults.CLAIM_GRACE)
        rows.append(
            {
                "task": info.task_id,
                "agent": owner.agent if owner else None,
                "kind": owner.kind if owner else None,
                "host": owner.host if owner else None,
                "pid": owner.pid if owner else None,
                "claimed_at": owner.claimed_at if owner else None,
                "age": round(at - owner.claimed_at, 3) if owner else None,
                "lease": owner.lease if owner else None,
                "token": owner.token if owner else None,
                "stale": stale is not None,
                "stale_reason": stale,
                "problem": info.problem,
            }
        )
    if as_json:
        console.emit_json(rows)
    else:
        render.lock_table(rows)
