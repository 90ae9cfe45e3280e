"""`stigmergy task ...`: parse, call the store, render."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stigmergy_cli import claims, console, events, pool, signals, tasks
from stigmergy_cli.cli import render, task_import
from stigmergy_cli.cli._common import JsonFlag, now, open_env, options, report_problems, whoami
from stigmergy_cli.environment import Environment
from stigmergy_cli.errors import Conflict, InvalidInput, TaskNotFound
from stigmergy_cli.paths import STATES
from stigmergy_cli.tasks import Task

if TYPE_CHECKING:
    from stigmergy_cli.remote_pool import RemotePool

app = typer.Typer(help="Add, import, list and manage tasks.", no_args_is_help=True)
# Git backend: a listing younger than this is served from the local cache of the remote's refs.
REMOTE_CACHE_AGE = 5.0


def _remote(env: Environment) -> RemotePool:
    from stigmergy_cli.remote_pool import RemotePool  # git backend only

    return RemotePool(env.layout, env.config)


TaskId = Annotated[str, typer.Argument(help="The task's id.", show_default=False)]


@app.command("add")
def add(
    ctx: typer.Context,
    title: Annotated[str, typer.Argument(help="One line saying what to do.", show_default=False)],
    task_id: Annotated[
        str | None,
        typer.Option("--id", metavar="ID", help="Id (default: title slug + short hash)."),
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", metavar="TEXT", help="Details.")
    ] = None,
    priority: Annotated[
        str,
        typer.Option(
            "--priority", "-p", metavar="N|WORD", help="0-100 or low, medium, high, urgent."
        ),
    ] = "medium",
    urgent: Annotated[
        bool, typer.Option("--urgent", help="Deposit urgent pressure: jumps the queue.")
    ] = False,
    deps: Annotated[
        list[str] | None,
        typer.Option("--dep", metavar="ID", help="A task that must be done first."),
    ] = None,
    role: Annotated[
        str | None, typer.Option("--role", metavar="ROLE", help="Only agents with this role.")
    ] = None,
    labels: Annotated[
        list[str] | None, typer.Option("--label", metavar="LABEL", help="A label.")
    ] = None,
    inputs: Annotated[
        list[str] | None, typer.Option("--input", metavar="PATH", help="A path it reads.")
    ] = None,
    outputs: Annotated[
        list[str] | None, typer.Option("--output", metavar="PATH", help="A path it writes.")
    ] = None,
    command: Annotated[
        str | None, typer.Option("--command", metavar="CMD", help="Executor for this task only.")
    ] = None,
    verify: Annotated[
        str | None,
        typer.Option("--verify", metavar="CMD", help="Command that must exit 0 on success."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", metavar="SECONDS", help="Seconds before the executor is killed."),
    ] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option("--max-attempts", metavar="N", help="Attempts before it fails for good."),
    ] = None,
    allow_empty: Annotated[
        bool | None,
        typer.Option(
            "--allow-empty/--no-allow-empty",
            help="Done even if its executor changes nothing (default: tasks.allow_empty).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a pending task."""
    env = open_env(ctx, git_backend=True)
    at = now()
    doc: dict[str, Any] = {
        "id": task_id,
        "title": title,
        "description": description,
        "priority": tasks.parse_priority(priority),
        "depends_on": deps or [],
        "role": role,
        "labels": labels or [],
        "inputs": inputs or [],
        "outputs": outputs or [],
        "command": command,
        "verify": verify,
        "timeout": timeout,
        "max_attempts": max_attempts,
        "allow_empty": allow_empty,
    }
    from stigmergy_cli import sessions

    if env.config.backend == "git":
        if urgent:
            raise InvalidInput("--urgent needs the local backend; use --priority urgent")
        record = _remote(env).add(tasks.new_task(doc, now=at, created_by=whoami()))
        (entry,) = pool.build([record], at, env.config.pressure)
    else:
        record = sessions.add(env, doc, urgent=urgent, by=whoami(), now=at)
        (entry,) = pool.entries(env, [record], at)
    if as_json:
        console.emit_json(pool.entry_json(entry))
    else:
        console.say(f"Added {record.task.id} (priority {record.task.priority}, pending)")


@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="A YAML file with a list of tasks, or - for stdin.")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Add many tasks from one YAML list: all of them, or none if any is invalid."""
    task_import.run(options(ctx).root, source, as_json=as_json)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status", "-s", metavar="STATE", help=f"Only these states: {', '.join(STATES)}."
        ),
    ] = None,
    ready: Annotated[
        bool, typer.Option("--ready", help="Only tasks an agent could start now.")
    ] = False,
    blocked: Annotated[
        bool, typer.Option("--blocked", help="Only pending tasks that wait, and why.")
    ] = False,
    role: Annotated[
        str | None, typer.Option("--role", metavar="ROLE", help="Only tasks for this role.")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", metavar="LABEL", help="Only tasks with this label.")
    ] = None,
    refresh: Annotated[
        bool,
        typer.Option("--refresh", help="Git backend: fetch from the remote even if just fetched."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """List tasks, best score first."""
    for state in status or []:
        if state not in STATES:
            raise InvalidInput(f"unknown status {state!r}: use one of {', '.join(STATES)}")
    env = open_env(ctx, git_backend=True)
    at = now()
    if env.config.backend == "git":
        remote = _remote(env)
        remote.refresh(max_age=None if refresh else REMOTE_CACHE_AGE)
        found, unreadable = remote.records()
        for problem in unreadable:
            console.warn(f"skipped {problem}")
        entries = pool.build([r for r, _ in found.values()], at, env.config.pressure)
    else:
        scan = env.store.scan(at)
        report_problems(scan.problems, env)
        entries = pool.build(scan.records, at, env.config.pressure, pool.field_pressures(env, at))
    wanted = set(status or [])
    shown = [
        e
        for e in entries
        if (not wanted or e.record.state in wanted)
        and (not ready or e.ready)
        and (not blocked or e.blocked is not None)
        and (role is None or e.record.task.role == role)
        and (label is None or label in e.record.task.labels)
    ]
    if as_json:
        console.emit_json([pool.entry_json(e) for e in shown])
    else:
        render.task_table(shown, show_reason=blocked)


@app.command("show")
def show(ctx: typer.Context, task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Show one task in full."""
    env = open_env(ctx, git_backend=True)
    at = now()
    if env.config.backend == "git":
        remote = _remote(env)
        remote.refresh(max_age=REMOTE_CACHE_AGE)
        found, _ = remote.records()
        if task_id not in found:
            raise TaskNotFound(f"no task {task_id!r} on remote {env.config.remote!r}")
        records = [r for r, _ in found.values()]  # its dependencies' states explain a block
        entry = next(
            e for e in pool.build(records, at, env.config.pressure) if e.record.task.id == task_id
        )
    else:
        (entry,) = pool.entries(env, [env.store.get(task_id)], at)
    if as_json:
        console.emit_json(pool.entry_json(entry))
    else:
        render.task_detail(entry, env.layout.root)


def _simple_transition(
    ctx: typer.Context,
    task_id: str,
    *,
    verb: str,
    allowed: tuple[str, ...],
    to_state: str,
    event: str,
    change: Callable[[Task], Task] = lambda task: task,
) -> None:
    env = open_env(ctx, git_backend=True)
    at = now()
    if env.config.backend == "git":
        record = _remote(env).transition(
            tasks.validate_id(task_id),
            allowed=allowed,
            to_state=to_state,
            change=change,
            now=at,
            verb=verb,
        )
    else:
        record = env.store.transition(
            task_id,
            allowed=allowed,
            to_state=to_state,
            change=change,
            who=whoami(),
            now=at,
            verb=verb,
        )
    events.append(env.layout.events, event, at, task=task_id, by=whoami(), state=record.state)
    console.say(f"{task_id} is now {record.state}.")


@app.command("cancel")
def cancel(ctx: typer.Context, task_id: TaskId) -> None:
    """Cancel a pending or failed task (or an active one nobody holds any more)."""
    _simple_transition(
        ctx,
        task_id,
        verb="cancel",
        allowed=("pending", "active", "failed"),
        to_state="cancelled",
        event=events.CANCELLED,
    )


@app.command("retry")
def retry(ctx: typer.Context, task_id: TaskId) -> None:
    """Put a failed or cancelled task back in the pool with fresh attempts."""
    _simple_transition(
        ctx,
        task_id,
        verb="retry",
        allowed=("failed", "cancelled"),
        to_state="pending",
        event=events.RETRIED,
        change=lambda task: task.evolve(attempts=0),
    )


@app.command("boost")
def boost(ctx: typer.Context, task_id: TaskId) -> None:
    """Deposit boost pressure on a pending task so agents take it sooner."""
    env = open_env(ctx)
    at = now()
    record = env.store.get(tasks.validate_id(task_id))
    if record.state != "pending":
        raise Conflict(
            f"cannot boost task {task_id!r}: it is {record.state} (only pending tasks can be)"
        )
    claims.deposit(
        env.store,
        env.config,
        signals.BOOST,
        task_id,
        env.config.pressure.signal_boost,
        whoami(),
        at,
    )
    events.append(env.layout.events, events.BOOSTED, at, task=task_id, by=whoami())
    console.say(f"{task_id} boosted.")


AgentOpt = Annotated[
    str, typer.Option("--agent", metavar="AGENT", help="The agent acting.", show_default=False)
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token", metavar="TOKEN", help="The claim's token, as `task claim --json` printed it."
    ),
]


@app.command("claim")
def claim(
    ctx: typer.Context,
    task_id: Annotated[
        str | None, typer.Argument(help="A particular task (default: the best ready one).")
    ] = None,
    *,
    agent: AgentOpt,
    role: Annotated[
        str | None, typer.Option("--role", metavar="ROLE", help="The agent's role.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Claim a task for an agent that drives itself; exit 1 if nothing is claimable."""
    from stigmergy_cli import sessions  # git and worktrees: only for the commands that use them

    env = open_env(ctx, git_backend=True)
    claimed = sessions.claim(env, agent, task_id, role=role, now=now())
    if as_json:
        console.emit_json(claimed)
        return
    console.say(f"Claimed {claimed['id']}: {claimed['title']}")
    console.say(f"  work in:  {claimed['worktree']}")
    if claimed["verify"]:
        console.say(f"  verify:   {claimed['verify']}")
    console.say(
        f"  finish with `stigmergy task done {claimed['id']} --agent {claimed['agent']}`; give it "
        "back with `task release`, or record a failure with `task fail`"
    )


@app.command("release")
def release(
    ctx: typer.Context, task_id: TaskId, *, agent: AgentOpt, token: TokenOpt = None
) -> None:
    """Give a claimed task back unfinished (counts as a skip, not a failed attempt)."""
    from stigmergy_cli import sessions

    record = sessions.release(
        open_env(ctx, git_backend=True), agent, task_id, token=token, now=now()
    )
    console.say(f"{task_id} is {record.state} again.")


@app.command("fail")
def fail(
    ctx: typer.Context,
    task_id: TaskId,
    *,
    agent: AgentOpt,
    reason: Annotated[
        str | None, typer.Option("--reason", metavar="TEXT", help="What went wrong.")
    ] = None,
    token: TokenOpt = None,
) -> None:
    """Record a failed attempt: the task goes back to pending, or to failed at its limit."""
    from stigmergy_cli import sessions

    env = open_env(ctx, git_backend=True)
    record = sessions.fail(env, agent, task_id, token=token, reason=reason, now=now())
    console.say(
        f"{task_id} failed (attempt {record.task.attempts} of "
        f"{claims.max_attempts(record.task, env.config)}); it is now {record.state}."
    )


@app.command("done")
def done(ctx: typer.Context, task_id: TaskId, *, agent: AgentOpt, token: TokenOpt = None) -> None:
    """Verify and merge the work in the agent's worktree (for agents that drive themselves)."""
    from stigmergy_cli import sessions

    env = open_env(ctx, git_backend=True)
    outcome = sessions.done(env, agent, task_id, token=token, now=now())
    messages = {
        "merged": f"{task_id} merged into {env.config.target} ({outcome.merge_commit}).",
        "unchanged": f"{task_id} done: no change to merge.",
        "conflict": f"{task_id} done, but its merge conflicted in {', '.join(outcome.files)}: "
        f"task {outcome.conflict_task} will resolve it.",
        "deferred": f"{task_id} done; merge deferred: {outcome.detail}.",
    }
    console.say(messages[outcome.kind])
