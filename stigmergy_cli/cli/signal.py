"""`stigmergy signal ...`: deposit and read the pressure field."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from stigmergy_cli import console, signals
from stigmergy_cli.cli._common import JsonFlag, now, open_env, whoami
from stigmergy_cli.errors import InvalidInput

app = typer.Typer(
    help="Deposit and read signals: the pressure field agents act on.", no_args_is_help=True
)

TaskOpt = Annotated[str | None, typer.Option("--task", metavar="ID", help="Target a task.")]
AgentOpt = Annotated[str | None, typer.Option("--agent", metavar="AGENT", help="Target an agent.")]
RoleOpt = Annotated[str | None, typer.Option("--role", metavar="ROLE", help="Target a role.")]


@app.command("deposit")
def deposit(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="What the signal says, e.g. urgent, stuck, review.")],
    task: TaskOpt = None,
    agent: AgentOpt = None,
    role: RoleOpt = None,
    intensity: Annotated[
        float, typer.Option("--intensity", "-i", metavar="X", help="From -1.0 to 1.0.")
    ] = 0.5,
    meta: Annotated[
        list[str] | None, typer.Option("--meta", metavar="KEY=VALUE", help="Metadata to attach.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the signal as JSON.")] = False,
) -> None:
    """Deposit a signal on a task, an agent or a role."""
    from stigmergy_cli import sessions

    pairs: dict[str, Any] = {}
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--meta takes KEY=VALUE, not {item!r}")
        pairs[key] = value
    env = open_env(ctx)
    at = now()
    stored = sessions.deposit(
        env,
        kind,
        task=task,
        agent=agent,
        role=role,
        intensity=intensity,
        meta=pairs,
        by=whoami(),
        now=at,
    )
    if as_json:
        console.emit_json(_doc(stored, at, env.config.pressure))
    else:
        console.say(f"Deposited {kind} ({intensity:+g}) on {stored.target}.")


def _doc(signal: signals.Signal, at: float, cfg: Any) -> dict[str, Any]:
    return {
        "id": signal.id,
        "kind": signal.kind,
        "target": signal.target,
        "intensity": signal.intensity,
        "pressure": round(signal.now(at, cfg), 4),
        "agent": signal.agent,
        "at": signal.at,
        "meta": dict(signal.meta),
    }


@app.command("list")
def list_(
    ctx: typer.Context,
    task: TaskOpt = None,
    agent: AgentOpt = None,
    role: RoleOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Signals still in the field, strongest first, with what is left of each now."""
    where = signals.parse_target(task, agent, role) if (task or agent or role) else None
    env = open_env(ctx)
    at = now()
    cfg = env.config.pressure
    found = [s for s in signals.Field(env.layout, cfg).all() if where is None or s.target == where]
    found.sort(key=lambda s: -abs(s.now(at, cfg)))
    if as_json:
        console.emit_json([_doc(s, at, cfg) for s in found])
        return
    if not found:
        console.say("No signals.")
        return
    for s in found:
        by = f" by {s.agent}" if s.agent else ""
        console.say(
            f"{s.now(at, cfg):+.3f}  {s.kind:<16} {s.target}{by}  (deposited {s.intensity:+g})"
        )


@app.command("read")
def read(
    ctx: typer.Context,
    task: TaskOpt = None,
    agent: AgentOpt = None,
    role: RoleOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """The pressure on one task, agent or role now (a task's includes its own file's deposit)."""
    where = signals.parse_target(task, agent, role)
    env = open_env(ctx)
    at = now()
    field = signals.Field(env.layout, env.config.pressure)
    value = field.read([where], at)
    if task is not None:
        from stigmergy_cli import decay

        own = env.store.get(task).task
        value += decay.pressure_now(own.pressure, own.pressure_at, at, env.config.pressure, own.id)
    if as_json:
        console.emit_json({"target": where, "pressure": round(value, 6), "at": at})
    else:
        console.say(f"{value:+.4f}")
