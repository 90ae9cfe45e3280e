"""What an agent that drives itself can do, one call at a time (the CLI's `task claim/done/
release/fail` and the MCP server's tools): same checks, same fencing, same messages.

Each function validates its input, acts, refreshes the agent's session heartbeat, and
returns plain data; refusals are StigmergyError with the one-line message both fronts show.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from stigmergy_cli import claims, heartbeats, pool, signals, tasks
from stigmergy_cli.environment import Environment
from stigmergy_cli.errors import StigmergyError
from stigmergy_cli.store import TaskRecord

if TYPE_CHECKING:
    from stigmergy_cli import merge


def add(env: Environment, doc: dict[str, Any], *, urgent: bool, by: str, now: float) -> TaskRecord:
    """Add a pending task from its fields (an id is generated from the title when absent)."""
    task = tasks.new_task(doc, now=now, created_by=by)
    record = env.store.add(task, now, id_generated=doc.get("id") is None)
    if urgent:
        intensity = env.config.pressure.signal_urgent
        claims.deposit(env.store, env.config, signals.URGENT, record.task.id, intensity, by, now)
    return record


def claim(
    env: Environment, agent: str, task_id: str | None, *, role: str | None, now: float
) -> dict[str, Any]:
    """Claim the best ready task (or `task_id`) and hand back the task, token and worktree."""
    from stigmergy_cli import results  # git: imported by the calls that need it

    agent = tasks.validate_id(agent, "agent id")
    if task_id is not None:
        tasks.validate_id(task_id)
    if role is not None:
        tasks.validate_name(role, "role")
    if env.config.backend == "git":
        return _claim_remote(env, agent, task_id, role=role, now=now)
    field = pool.field_pressures(env, now)  # read once: for the claim and for the answer
    if task_id is None:
        claimed = claims.claim_best(
            env.store, env.config, agent, role=role, now=now, session=True, field=field
        )
    else:
        claimed = claims.claim_named(
            env.store, env.config, agent, task_id, role=role, now=now, session=True
        )
    claimed.claim.close()  # the caller's process ends; the session heartbeat keeps the claim
    task = claimed.record.task
    heartbeats.touch_session(env.layout, agent, role=role, task=task.id, status="working", now=now)
    try:
        worktree = results.prepare(env.layout, env.config, agent, task, now)
    except StigmergyError:
        claims.release(
            env.store, env.config, agent, task.id, token=claimed.token, now=now, skip=False
        )
        raise
    return {
        **pool.task_json(env, claimed.record, now, field),
        "token": claimed.token,
        "agent": agent,
        "worktree": str(worktree),
    }


def _claim_remote(
    env: Environment, agent: str, task_id: str | None, *, role: str | None, now: float
) -> dict[str, Any]:
    """`claim` through the git backend: the claim lives on the remote, renewed by
    `agent heartbeat` (its lease is agent.session_lease), and is remembered in this clone."""
    from stigmergy_cli import results
    from stigmergy_cli.remote_pool import RemotePool

    remote = RemotePool(env.layout, env.config)
    lease = env.config.session_lease
    if task_id is None:
        held = remote.claim_best(agent, role=role, now=now, lease=lease)
    else:
        held = remote.claim_named(task_id, agent, now, lease=lease, role=role)
    remote.remember(agent, held)
    heartbeats.touch_session(
        env.layout, agent, role=role, task=held.task.id, status="working", now=now
    )
    try:
        worktree = results.prepare(
            env.layout, env.config, agent, held.task, now, target_ref=remote.remote.cached_target
        )
    except StigmergyError:
        remote.give_back(held, agent, "worktree not ready", now, skip=False)
        remote.forget(agent, held.task.id)
        raise
    (entry,) = pool.build([TaskRecord(held.task, "active", env.layout)], now, env.config.pressure)
    return {
        **pool.entry_json(entry),
        "token": held.token,
        "agent": agent,
        "worktree": str(worktree),
    }


def done(
    env: Environment, agent: str, task_id: str, *, token: str | None, now: float
) -> merge.Outcome:
    """Verify and integrate the agent worktree's work, fenced like `agent run`'s merges."""
    from stigmergy_cli import merge, results

    agent = tasks.validate_id(agent, "agent id")
    tasks.validate_id(task_id)
    if env.config.backend == "git":
        return _done_remote(env, agent, task_id, token=token, now=now)
    record = env.store.get(task_id)
    with claims.owned(env.store, task_id, agent, token) as owner:
        token = owner.token
    task = record.task
    log_path = env.layout.task_log(task.id, task.attempts + 1)
    worktree = _verified_worktree(env, agent, task, log_path)
    commit = results.commit(env.layout, env.config, worktree, task, agent)
    outcome = merge.integrate(
        env.store,
        env.config,
        task_id=task.id,
        agent=agent,
        token=token,
        result=commit,
        now=now,
        log=_relative(log_path, env.layout.env),
    )
    heartbeats.touch_session(env.layout, agent, role=None, task=None, status="idle", now=now)
    if outcome.kind == "fenced":
        raise StigmergyError(outcome.detail)
    return outcome


def _done_remote(
    env: Environment, agent: str, task_id: str, *, token: str | None, now: float
) -> merge.Outcome:
    from stigmergy_cli import results
    from stigmergy_cli.remote_pool import RemotePool

    remote = RemotePool(env.layout, env.config)
    held = remote.recall(agent, task_id, token)
    task = held.task
    log_path = env.layout.task_log(task.id, task.attempts + 1)
    worktree = _verified_worktree(env, agent, task, log_path)
    target_ref = remote.remote.cached_target
    commit = results.commit(env.layout, env.config, worktree, task, agent, target_ref=target_ref)
    outcome = remote.land(held, agent, commit, None, now, _relative(log_path, env.layout.env))
    remote.forget(agent, task_id)
    heartbeats.touch_session(env.layout, agent, role=None, task=None, status="idle", now=now)
    if outcome.kind == "fenced":
        raise StigmergyError(outcome.detail)
    return outcome


def _verified_worktree(env: Environment, agent: str, task: tasks.Task, log_path: Path) -> Path:
    """The agent's worktree, once the task's verify passed and no conflict marker is left."""
    from stigmergy_cli import executor, results, worktrees

    worktree = env.layout.workspace(agent)
    if not worktrees.is_worktree(worktree):
        raise StigmergyError(
            f"agent {agent!r} has no worktree; `stigmergy agent workspace --id {agent}` makes one"
        )
    if task.verify:
        check = executor.run(
            task.verify,
            cwd=worktree,
            env=executor.environment({"STIGMERGY_TASK_ID": task.id, "STIGMERGY_AGENT": agent}),
            log_path=log_path,
            timeout=task.timeout if task.timeout is not None else env.config.task_timeout,
            stop=lambda: False,
        )
        if not check.ok:
            last = check.tail.strip().splitlines()[-1:] or ["no output"]
            raise StigmergyError(
                f"verify failed (exit {check.code}): {last[0]} (full output in {log_path}); "
                "the task is still yours"
            )
    left = results.unresolved(worktree, task)
    if left:
        raise StigmergyError(
            f"conflict markers remain in {', '.join(left)}; the task is still yours"
        )
    return worktree


def _relative(path: Path, base: Path) -> str | None:
    return str(path.relative_to(base)) if path.exists() else None


def release(
    env: Environment, agent: str, task_id: str, *, token: str | None, now: float
) -> TaskRecord:
    """Give a claimed task back unfinished (a skip)."""
    agent = tasks.validate_id(agent, "agent id")
    tasks.validate_id(task_id)
    if env.config.backend == "git":
        from stigmergy_cli.remote_pool import RemotePool

        remote = RemotePool(env.layout, env.config)
        record = remote.give_back(remote.recall(agent, task_id, token), agent, None, now, skip=True)
        remote.forget(agent, task_id)
    else:
        record = claims.release(env.store, env.config, agent, task_id, token=token, now=now)
    heartbeats.touch_session(env.layout, agent, role=None, task=None, status="idle", now=now)
    return record


def fail(
    env: Environment, agent: str, task_id: str, *, token: str | None, reason: str | None, now: float
) -> TaskRecord:
    """Record a failed attempt of a claimed task."""
    agent = tasks.validate_id(agent, "agent id")
    if reason is not None:
        reason = " ".join(reason.split())[:2000]
    tasks.validate_id(task_id)
    if env.config.backend == "git":
        from stigmergy_cli.remote_pool import RemotePool

        remote = RemotePool(env.layout, env.config)
        record = remote.fail(remote.recall(agent, task_id, token), agent, reason, now)
        remote.forget(agent, task_id)
    else:
        record = claims.fail(
            env.store, env.config, agent, task_id, token=token, reason=reason, now=now
        )
    heartbeats.touch_session(env.layout, agent, role=None, task=None, status="idle", now=now)
    return record


def heartbeat(env: Environment, agent: str, now: float) -> heartbeats.Heartbeat:
    """A self-driving agent saying it is still at work on what it holds."""
    agent = tasks.validate_id(agent, "agent id")
    if env.config.backend == "git":  # renew every claim this agent took from this clone
        from stigmergy_cli.remote_pool import RemotePool

        remote = RemotePool(env.layout, env.config)
        for held in remote.held_by(agent):
            if remote.renew(held, now):
                remote.remember(agent, held)
            else:
                remote.forget(agent, held.task.id)  # broken by a sweep: no longer ours
    previous = heartbeats.read(env.layout, agent)
    task = previous.task if previous is not None else None
    status = "working" if task else "idle"
    return heartbeats.touch_session(env.layout, agent, role=None, task=task, status=status, now=now)


def deposit(
    env: Environment,
    kind: str,
    *,
    task: str | None,
    agent: str | None,
    role: str | None,
    intensity: float,
    meta: dict[str, Any],
    by: str | None,
    now: float,
) -> signals.Signal:
    """Deposit a signal on one task, agent or role."""
    where = signals.parse_target(task, agent, role)
    if task is not None:
        env.store.get(task)  # a signal on a task that does not exist helps nobody
    return signals.Field(env.layout, env.config.pressure).deposit(
        signals.Signal(kind, intensity, where, now, agent=by, meta=meta)
    )
