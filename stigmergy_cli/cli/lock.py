"""`stigmergy lock list`: the claims and whether each is still live."""

from __future__ import annotations

from typing import Any

import typer

from stigmergy_cli import console, defaults, heartbeats, locks
from stigmergy_cli.cli import render
from stigmergy_cli.cli._common import JsonFlag, now, open_env
from stigmergy_cli.environment import Environment

app = typer.Typer(help="Inspect claim locks.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: JsonFlag = False,
) -> None:
    """Every claim: who holds it, since when, and whether the sweep would break it."""
    from stigmergy_cli.sweep import stale_reason

    env = open_env(ctx, git_backend=True)
    at = now()
    if env.config.backend == "git":
        claims = _remote_rows(env, at)
        if as_json:
            console.emit_json(claims)
        else:
            render.lock_table(claims)
        return
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


def _remote_rows(env: Environment, at: float) -> list[dict[str, Any]]:
    """The claims on the remote. Whether one is stale is the sweep's call: it needs to have
    watched the claim for a lease on its own clock."""
    from stigmergy_cli.remote_pool import RemotePool

    remote = RemotePool(env.layout, env.config)
    remote.refresh()
    rows = []
    for claim in remote.claims().values():
        owner = claim.owner
        claimed_at = owner.get("claimed_at")
        renewed_at = owner.get("renewed_at")
        rows.append(
            {
                "task": claim.task_id,
                "agent": claim.agent,
                "kind": "agent",
                "host": owner.get("host"),
                "pid": owner.get("pid"),
                "claimed_at": claimed_at,
                "age": round(at - claimed_at, 3) if isinstance(claimed_at, float) else None,
                "renewed_at": renewed_at,
                "lease": owner.get("lease"),
                "token": claim.token,
                "commit": claim.commit,
                "stale": None,
                "stale_reason": None,
                "problem": None if owner else "unreadable owner record",
            }
        )
    return rows
