"""One consistent look at the whole environment, for `status`, `watch` and programs."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from stigmergy_cli import events, heartbeats, locks, pool, signals
from stigmergy_cli.config import Config
from stigmergy_cli.paths import STATES, Layout
from stigmergy_cli.pool import Entry
from stigmergy_cli.store import TaskRecord, TaskStore

RECENT_EVENTS = 12
REMOTE_CACHE_AGE = 2.0  # seconds: a dashboard refreshing every second fetches every other time
READY_SHOWN = 10
PRESSURE_SHOWN = 8


@dataclass(frozen=True)
class AgentView:
    agent: str
    state: str  # alive | stale | gone | unreadable
    status: str | None
    task: str | None
    task_title: str | None
    seconds_on_task: float | None
    seconds_since_seen: float | None
    done: int
    failed: int
    kind: str | None


@dataclass
class Snapshot:
    target: str
    at: float
    counts: dict[str, int]
    agents: list[AgentView]
    ready: list[Entry]
    blocked: int
    pressure: list[Entry]
    recent: list[dict[str, Any]]
    problems: int
    claims: int
    merged: int = 0
    conflicts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The snapshot as one JSON document (`status --json`)."""
        return {
            "target": self.target,
            "at": self.at,
            "tasks": self.counts,
            "claims": self.claims,
            "unreadable_files": self.problems,
            "agents": [a.__dict__ for a in self.agents],
            "ready": [pool.entry_json(e) for e in self.ready],
            "blocked": self.blocked,
            "pressure": [
                {
                    "id": e.record.task.id,
                    "pressure": round(e.pressure, 4),
                    "score": round(e.score, 4),
                }
                for e in self.pressure
            ],
            "merged": self.merged,
            "conflicts": self.conflicts,
            "recent_events": self.recent,
        }


@dataclass(frozen=True)
class _Claim:
    agent: str
    claimed_at: float | None
    renewed_at: float | None  # the holder's last renewal, by its clock (git backend)


def _local(store: TaskStore, now: float) -> tuple[list[TaskRecord], int, dict[str, _Claim]]:
    scan = store.scan(now)
    held = {
        info.task_id: _Claim(info.owner.agent, info.owner.claimed_at, None)
        for info in locks.list_locks(store.layout)
        if info.owner
    }
    return scan.records, len(scan.problems), held


def _remote(layout: Layout, cfg: Config) -> tuple[list[TaskRecord], int, dict[str, _Claim]]:
    from stigmergy_cli.remote_pool import RemotePool  # git backend only

    remote = RemotePool(layout, cfg)
    remote.refresh(max_age=REMOTE_CACHE_AGE)
    found, unreadable = remote.records()
    held = {
        task_id: _Claim(
            claim.agent, _time(claim.owner, "claimed_at"), _time(claim.owner, "renewed_at")
        )
        for task_id, claim in remote.claims().items()
    }
    return [record for record, _ in found.values()], len(unreadable), held


def _time(owner: dict[str, Any], key: str) -> float | None:
    value = owner.get(key)
    return float(value) if isinstance(value, (int, float)) else None


def take(layout: Layout, store: TaskStore, cfg: Config, now: float) -> Snapshot:
    """Read tasks, claims, heartbeats and the tail of the event log at `now`.

    With the git backend, tasks and claims come from the remote (through the local cache,
    fetched when older than REMOTE_CACHE_AGE), and agents of other machines are listed from
    the claims they hold; heartbeats and events are this machine's.
    """
    records, problems, held = _remote(layout, cfg) if cfg.backend == "git" else _local(store, now)
    field = signals.Field(layout, cfg.pressure).pressures(now)
    entries = pool.build(records, now, cfg.pressure, field)
    by_id = {e.record.task.id: e for e in entries}
    counts = Counter(e.record.state for e in entries)
    claim_started = {task_id: claim.claimed_at for task_id, claim in held.items()}
    # What an agent holds, for agents whose heartbeat does not say (a session between calls).
    held_by = {claim.agent: task_id for task_id, claim in held.items()}
    agents = []
    for info in heartbeats.list_agents(layout):
        beat = info.beat
        if beat is None:
            agents.append(
                AgentView(info.agent, "unreadable", None, None, None, None, None, 0, 0, None)
            )
            continue
        lease = cfg.session_lease if beat.kind == "session" else cfg.lease
        task = beat.task or held_by.get(beat.agent)
        entry = by_id.get(task) if task else None
        started = claim_started.get(task) if task else None
        agents.append(
            AgentView(
                agent=beat.agent,
                state=heartbeats.liveness(beat, now, lease),
                status=beat.status,
                task=task,
                task_title=entry.record.task.title if entry else None,
                seconds_on_task=now - started if started is not None else None,
                seconds_since_seen=now - beat.last_seen,
                done=beat.done,
                failed=beat.failed,
                kind=beat.kind,
            )
        )
    here = {a.agent for a in agents}
    for task_id, claim in sorted(held.items()):
        if claim.agent in here or claim.renewed_at is None:
            continue  # a local agent, already listed from its heartbeat
        entry = by_id.get(task_id)
        agents.append(
            AgentView(
                agent=claim.agent,
                state="remote",  # on another machine: its claim renewals say it is there
                status="working",
                task=task_id,
                task_title=entry.record.task.title if entry else None,
                seconds_on_task=now - claim.claimed_at if claim.claimed_at else None,
                seconds_since_seen=now - claim.renewed_at,
                done=0,
                failed=0,
                kind="remote",
            )
        )
    recent, merged, conflicts = _tail(layout)
    return Snapshot(
        target=cfg.target,
        at=now,
        counts={state: counts.get(state, 0) for state in STATES},
        agents=agents,
        ready=[e for e in entries if e.ready][:READY_SHOWN],
        blocked=sum(1 for e in entries if e.blocked is not None),
        pressure=sorted(
            (e for e in entries if e.record.state == "pending" and abs(e.pressure) > 1e-4),
            key=lambda e: -e.pressure,
        )[:PRESSURE_SHOWN],
        recent=recent,
        problems=problems,
        claims=len(claim_started),
        merged=merged,
        conflicts=conflicts,
    )


def _tail(layout: Layout) -> tuple[list[dict[str, Any]], int, int]:
    """The last events, and counts of merges and conflicts in the whole log."""
    recent: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)
    merged = conflicts = 0
    if not layout.events.exists():
        return [], 0, 0
    for event in events.read(layout.events):
        recent.append(event)
        kind = event["event"]
        if kind == events.MERGED and "via" not in event:
            merged += 1
        elif kind == events.CONFLICT:
            conflicts += 1
    return list(recent), merged, conflicts
