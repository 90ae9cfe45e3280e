"""The claim protocol: take the best available task, and give it back fenced by its token.

Taking: scan pending/, rank by score, and try the lock of each ready, eligible task in turn
until one is won; agents claiming at the same moment spread out over the best tasks rather
than all racing for each in turn (`spread_out`). Giving back (release, fail) and
completing happen under the integration lock after checking that the caller's token is still
the one on the lock, so an agent whose claim was swept can change nothing.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stigmergy_cli import decay, events, heartbeats, locks, pool, signals
from stigmergy_cli.config import Config
from stigmergy_cli.errors import Conflict, StigmergyError
from stigmergy_cli.locks import NotOwner, Owner
from stigmergy_cli.store import TaskRecord, TaskStore
from stigmergy_cli.tasks import Task


class NothingClaimable(StigmergyError):
    """No task is available to this agent right now; the message says why.

    `waiting`: some pending task waits for a dependency or for more pressure, so a task
    finishing elsewhere may make it claimable; otherwise only a change to pending/ can.
    """

    def __init__(self, message: str, *, waiting: bool = True) -> None:
        super().__init__(message)
        self.waiting = waiting


@dataclass
class Claimed:
    """A task this agent now holds (moved to active/), and its lock."""

    record: TaskRecord
    claim: locks.Claim
    # Pending tasks that depended on this one when it was claimed (None: not looked at), so
    # its completion can nudge them without scanning the pool again.
    dependants: tuple[str, ...] | None = None

    @property
    def token(self) -> str:
        return self.claim.owner.token

    @property
    def task(self) -> Task:
        return self.record.task


ANY_ROLE = "*"  # an agent that takes every task, whatever its role (API schedulers)


def eligible(task: Task, role: str | None) -> bool:
    """Role-less tasks are for everyone; a task with a role only for agents with that role."""
    return task.role is None or role in (task.role, ANY_ROLE)


class _Readiness:
    """Dependency checks for claiming: a few stats and reads, remembered for one claim."""

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self._ok: dict[str, bool] = {}

    def _dep_ok(self, dep: str) -> bool:
        if dep not in self._ok:
            found = self.store.locate(dep)
            ok = False
            if found is not None and found[0] == "done":
                with contextlib.suppress(StigmergyError):
                    result = self.store.get(dep).task.result
                    ok = result is None or result.get("merged", True) is not False
            self._ok[dep] = ok
        return self._ok[dep]

    def ready(self, task: Task) -> bool:
        return all(self._dep_ok(dep) for dep in task.depends_on)

    def waiting_for(self, task: Task) -> list[str]:
        return [dep for dep in task.depends_on if not self._dep_ok(dep)]


def _owner(agent: str, task: Task, cfg: Config, now: float, *, session: bool) -> Owner:
    return Owner.new(
        agent,
        "agent",
        attempt=task.attempts + 1,
        now=now,
        lease=cfg.session_lease if session else cfg.lease,
        liveness="session" if session else "process",
    )


def _take(
    store: TaskStore, seen: TaskRecord, agent: str, cfg: Config, now: float, *, session: bool
) -> Claimed | None:
    """Try to win the lock of the task `seen` and move it to active; None if someone else
    has it."""
    task = seen.task
    if os.path.lexists(store.layout.lock_dir(task.id)):
        return None  # taken: skip the cost of building a claim that would lose
    claim = locks.acquire(store.layout, task.id, _owner(agent, task, cfg, now, session=session))
    if claim is None:
        return None
    try:
        record = store.current(seen)
        if record.state != "pending":  # taken and finished, cancelled... since we looked
            raise Conflict(f"task {task.id!r} is {record.state}")  # noqa: TRY301
        record = store.move(record, "active")
    except StigmergyError:
        with locks.integration_lock(store.layout):
            locks.release(store.layout, claim)
        return None
    except BaseException:
        with locks.integration_lock(store.layout):
            locks.release(store.layout, claim)
        raise
    events.append(
        store.layout.events,
        events.CLAIMED,
        now,
        task=task.id,
        agent=agent,
        token=claim.owner.token,
    )
    return Claimed(record, claim)


def claim_best(
    store: TaskStore,
    cfg: Config,
    agent: str,
    *,
    role: str | None,
    now: float,
    session: bool = False,
    can_take: Callable[[Task], bool] | None = None,
    wake_threshold: float | None = None,
    field: Mapping[str, float] | None = None,
    after_idle: bool = False,
) -> Claimed:
    """Claim the best-scoring ready task this agent may take; NothingClaimable if none.

    `field` is the signal pressures at `now`, if the caller has read them already.
    `after_idle`: the agent was idle until now, so other idle agents were probably woken by
    the same change and are claiming at this moment too (see `spread_out`).
    """
    scan = store.scan(now, states=("pending",))
    if field is None:
        field = signals.Field(store.layout, cfg.pressure).pressures(now)
    scores = {
        r.task.id: decay.score(
            r.task.priority, pool.task_pressure(r.task, now, cfg.pressure, field)
        )
        for r in scan.records
    }
    # An agent's own pressure (signals on it or its role) adds to what it sees: a nudge can
    # wake an idle agent whose threshold the pool alone does not reach.
    nudge = field.get(f"agent:{agent}", 0.0) + (field.get(f"role:{role}", 0.0) if role else 0.0)
    # Best score first, then oldest. Among tasks created together (an import), each agent
    # has its own order, so racing agents spread out instead of all trying the same task.
    ranked = sorted(
        scan.records,
        key=lambda r: (
            -scores[r.task.id],
            r.task.created_at or 0.0,
            _own_order(agent, r.task.id),
        ),
    )
    readiness = _Readiness(store)
    counts = {
        "other role": 0,
        "not executable": 0,
        "blocked": 0,
        "taken by others": 0,
        "below threshold": 0,
    }
    queue = list(ranked)
    spread = False
    at = 0
    while at < len(queue):
        if not spread and (after_idle or counts["taken by others"]):
            # Others are claiming at this moment: stop queueing behind them.
            spread = True
            rivals = heartbeats.count_idle(store.layout, role, now, cfg.lease)
            queue[at:] = spread_out(queue[at:], agent, rivals)
        record = queue[at]
        at += 1
        task = record.task
        if not eligible(task, role):
            counts["other role"] += 1
            continue
        if can_take is not None and not can_take(task):
            counts["not executable"] += 1
            continue
        if wake_threshold is not None and scores[task.id] + nudge < wake_threshold:
            counts["below threshold"] += 1
            continue
        if not readiness.ready(task):
            counts["blocked"] += 1
            continue
        claimed = _take(store, record, agent, cfg, now, session=session)
        if claimed is not None:
            claimed.dependants = tuple(r.task.id for r in ranked if task.id in r.task.depends_on)
            return claimed
        counts["taken by others"] += 1
    why = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
    pending = len(ranked)
    raise NothingClaimable(
        f"nothing to claim for agent {agent!r}: "
        + (f"{pending} pending ({why})" if pending else "no pending tasks"),
        waiting=bool(counts["blocked"] or counts["below threshold"]),
    )


def spread_out(queue: Sequence[TaskRecord], agent: str, width: int) -> list[TaskRecord]:
    """The next `width` tasks of `queue` in this agent's own order, then the rest as ranked.

    Agents woken together by the same tasks rank them alike, so every one would race for the
    best, every loser for the next, and agent k would lose k-1 races, each a claim built and
    thrown away (with twenty agents, ten tries each and the last claim 0.2-0.3 s late).
    Spread over as many tasks as there are agents claiming, those tasks go to those agents in
    some order. Used when an agent wakes from idle or loses a race; an agent that meets no
    rival takes the best.
    """
    head = sorted(queue[:width], key=lambda r: _own_order(agent, r.task.id))
    return [*head, *queue[width:]]


def _own_order(agent: str, task_id: str) -> int:
    """Where `task_id` comes in `agent`'s own order of otherwise equal tasks (each agent has a
    different one, the same at every claim)."""
    return zlib.crc32(f"{agent}/{task_id}".encode())


def claim_named(
    store: TaskStore,
    cfg: Config,
    agent: str,
    task_id: str,
    *,
    role: str | None,
    now: float,
    session: bool = False,
) -> Claimed:
    """Claim one particular task, or say exactly why it cannot be claimed."""
    record = store.get(task_id)
    if record.state != "pending":
        holder = locks.inspect(store.layout, task_id)
        by = f" by agent {holder.owner.agent!r}" if holder and holder.owner else ""
        raise NothingClaimable(f"task {task_id!r} is {record.state}{by}, not pending")
    if not eligible(record.task, role):
        raise NothingClaimable(f"task {task_id!r} is for role {record.task.role!r}")
    waits = _Readiness(store).waiting_for(record.task)
    if waits:
        raise NothingClaimable(f"task {task_id!r} waits for {', '.join(waits)}")
    claimed = _take(store, record, agent, cfg, now, session=session)
    if claimed is None:
        holder = locks.inspect(store.layout, task_id)
        by = f"agent {holder.owner.agent!r}" if holder and holder.owner else "another agent"
        raise NothingClaimable(f"task {task_id!r} was just claimed by {by}")
    return claimed


@contextlib.contextmanager
def owned(store: TaskStore, task_id: str, agent: str, token: str | None) -> Iterator[locks.Owner]:
    """Under the integration lock, yield the claim on `task_id` if `agent` (and `token`) hold it."""
    with locks.integration_lock(store.layout):
        info = locks.inspect(store.layout, task_id)
        owner = info.owner if info is not None else None
        if owner is None or owner.agent != agent or (token is not None and owner.token != token):
            if owner is not None and owner.agent != agent:
                raise NotOwner(
                    f"task {task_id!r} is claimed by agent {owner.agent!r}, not {agent!r}"
                )
            raise NotOwner(f"agent {agent!r} does not hold a claim on task {task_id!r}")
        yield owner


def _finish(
    store: TaskStore, owner: locks.Owner, task_id: str, change: Callable[[Task], tuple[Task, str]]
) -> TaskRecord:
    record = store.get(task_id)
    if record.state == "active":
        task, to_state = change(record.task)
        record = store.write(record, task, to_state)
    locks.remove(store.layout, task_id, owner.token, owner.agent)
    return record


def release(
    store: TaskStore,
    cfg: Config,
    agent: str,
    task_id: str,
    *,
    token: str | None,
    now: float,
    skip: bool = True,
    reason: str | None = None,
) -> TaskRecord:
    """Give a claimed task back unfinished, pending again.

    By default that is a skip signal (skip_count and skip pressure). With `skip=False` (the
    agent was interrupted, or its provider rate-limited it) nothing is counted against the task.
    """

    def back(task: Task) -> tuple[Task, str]:
        if not skip:
            return task.evolve(updated_at=now), "pending"
        return task.evolve(skip_count=task.skip_count + 1, updated_at=now), "pending"

    with owned(store, task_id, agent, token) as owner:
        record = _finish(store, owner, task_id, back)
    events.append(
        store.layout.events, events.RELEASED, now, task=task_id, agent=agent, reason=reason
    )
    if skip:
        events.append(store.layout.events, events.SKIPPED, now, task=task_id, agent=agent)
        deposit(store, cfg, signals.SKIP, task_id, cfg.pressure.signal_skip, agent, now)
    return record


def deposit(
    store: TaskStore,
    cfg: Config,
    kind: str,
    task_id: str,
    intensity: float,
    agent: str | None,
    now: float,
) -> None:
    """Deposit one of stigmergy's own signals on a task (skip, failure, urgent...)."""
    if intensity:
        signal = signals.Signal(kind, intensity, f"task:{task_id}", now, agent=agent)
        signals.Field(store.layout, cfg.pressure).deposit(signal)


def complete(
    store: TaskStore,
    cfg: Config,
    agent: str,
    task_id: str,
    *,
    token: str | None,
    now: float,
    output: str | None = None,
) -> TaskRecord:
    """Mark a claimed task done without git (for work that is not a commit: API dispatchers).

    Fenced like release and fail; its dependants become ready and get dependency pressure.
    """
    result: dict[str, Any] = {"outcome": "done", "agent": agent, "merged": True, "finished_at": now}
    if output:
        result["output"] = output[:2000]
    with owned(store, task_id, agent, token) as owner:
        record = _finish(
            store, owner, task_id, lambda t: (t.evolve(result=result, updated_at=now), "done")
        )
    events.append(store.layout.events, events.SUCCEEDED, now, task=task_id, agent=agent)
    nudge_dependants(store, cfg, task_id, agent, now)
    return record


def nudge_dependants(
    store: TaskStore,
    cfg: Config,
    task_id: str,
    agent: str,
    now: float,
    known: Sequence[str] | None = None,
) -> None:
    """A dependency completed: its pending dependants get dependency_done pressure.

    `known` lists them when the caller already knows (see Claimed.dependants).
    """
    intensity = cfg.pressure.signal_dependency_done
    if not intensity:
        return
    if known is None:
        pending = store.scan(now, states=("pending",)).records
        known = [r.task.id for r in pending if task_id in r.task.depends_on]
    for dependant in known:
        deposit(store, cfg, signals.DEPENDENCY_DONE, dependant, intensity, agent, now)


def max_attempts(task: Task, cfg: Config) -> int:
    """The task's own limit, or the configured one."""
    return task.max_attempts if task.max_attempts is not None else cfg.max_attempts


def requeue_after_failure(
    task: Task, cfg: Config, now: float, result: dict[str, Any]
) -> tuple[Task, str]:
    """Count a failed attempt: back to pending, or failed/ at the limit. (The caller deposits
    the failure signal that raises a retried task in the queue.)"""
    attempts = task.attempts + 1
    to_state = "failed" if attempts >= max_attempts(task, cfg) else "pending"
    return task.evolve(attempts=attempts, updated_at=now, result=result), to_state


def fail(
    store: TaskStore,
    cfg: Config,
    agent: str,
    task_id: str,
    *,
    token: str | None,
    reason: str | None,
    now: float,
) -> TaskRecord:
    """Record a failed attempt of a claimed task (see requeue_after_failure)."""
    result = {"outcome": "failed", "agent": agent, "reason": reason, "finished_at": now}
    with owned(store, task_id, agent, token) as owner:
        record = _finish(
            store, owner, task_id, lambda t: requeue_after_failure(t, cfg, now, result)
        )
    events.append(
        store.layout.events,
        events.FAILED,
        now,
        task=task_id,
        agent=agent,
        reason=reason,
        state=record.state,
    )
    if record.state == "pending":
        deposit(store, cfg, signals.FAILURE, task_id, cfg.pressure.signal_failure, agent, now)
    return record


def uncount(
    task: Task, agent: str, finished_at: float, count: int, now: float, why: str
) -> Task | None:
    """`task` with the last `count` failed attempts of `agent` taken back, the last recorded
    at `finished_at`; None if its last result is not that attempt any more (retried,
    claimed, finished since)."""
    result = task.result or {}
    if (
        result.get("outcome") != "failed"
        or result.get("agent") != agent
        or result.get("finished_at") != finished_at
        or task.attempts < count
    ):
        return None
    note = {**result, "outcome": "not counted", "reason": f"{result.get('reason')}; {why}"}
    return task.evolve(attempts=task.attempts - count, result=note, updated_at=now)


def refund(
    store: TaskStore,
    cfg: Config,
    task_id: str,
    agent: str,
    finished_at: float,
    count: int,
    now: float,
    why: str,
) -> bool:
    """Take back failed attempts that were the agent's fault, not the task's (`uncount`):
    the task is pending again. False if it moved on meanwhile."""
    try:
        with locks.exclusive(store.layout, task_id, who=agent, now=now, lease=cfg.lease):
            record = store.get(task_id)
            task = uncount(record.task, agent, finished_at, count, now, why)
            if task is None or record.state not in ("pending", "failed"):
                return False
            store.write(record, task, "pending")
    except Conflict:  # claimed by another agent meanwhile: that attempt stands
        return False
    events.append(store.layout.events, events.RELEASED, now, task=task_id, agent=agent, reason=why)
    return True
