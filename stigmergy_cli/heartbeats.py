"""Heartbeats: `agents/<agent>.json`, rewritten every few seconds by each agent process.

A heartbeat says an agent is alive, what it is doing, and since when. The agent process (not
the tool it runs) writes it from a background thread; a holder that cannot write it for half
its lease must assume its claim is lost (`Heartbeater.lost`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from stigmergy_cli import atomic
from stigmergy_cli.paths import Layout
from stigmergy_cli.procinfo import ProcessId

STATUSES = ("idle", "working", "merging", "stopped")
ALIVE, STALE, GONE = "alive", "stale", "gone"


@dataclass(frozen=True)
class Heartbeat:
    agent: str
    host: str
    boot_id: str
    pid: int
    pid_start: int | None
    role: str | None
    task: str | None
    status: str
    started: float
    last_seen: float
    seq: int = 0
    done: int = 0
    failed: int = 0
    # "process": a long-running agent process writes it. "session": an agent driving itself
    # through CLI or MCP calls; each call refreshes it, so its pid means nothing.
    kind: str = "process"
    # The executor at work now: its pid (its session's id) and start time, so that whoever
    # finds this agent dead can stop what it left running (orphans.py).
    executor_pid: int | None = None
    executor_start: int | None = None

    @property
    def process(self) -> ProcessId:
        return ProcessId(self.host, self.boot_id, self.pid, self.pid_start)

    @classmethod
    def new(cls, agent: str, *, role: str | None, now: float) -> Heartbeat:
        """A first heartbeat for this process."""
        me = ProcessId.current()
        return cls(agent, me.host, me.boot_id, me.pid, me.start, role, None, "idle", now, now)

    @classmethod
    def from_dict(cls, doc: Any) -> Heartbeat:
        """Validate a parsed heartbeat; ValueError on anything malformed."""
        if not isinstance(doc, dict):
            raise ValueError("heartbeat is not a JSON object")  # noqa: TRY004 - callers catch ValueError
        try:
            beat = cls(
                agent=str(doc["agent"]),
                host=str(doc["host"]),
                boot_id=str(doc.get("boot_id", "")),
                pid=int(doc["pid"]),
                pid_start=None if doc.get("pid_start") is None else int(doc["pid_start"]),
                role=None if doc.get("role") is None else str(doc["role"]),
                task=None if doc.get("task") is None else str(doc["task"]),
                status=str(doc["status"]),
                started=float(doc["started"]),
                last_seen=float(doc["last_seen"]),
                seq=int(doc.get("seq", 0)),
                done=int(doc.get("done", 0)),
                failed=int(doc.get("failed", 0)),
                kind=str(doc.get("kind", "process")),
                executor_pid=_int_or_none(doc.get("executor_pid")),
                executor_start=_int_or_none(doc.get("executor_start")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"heartbeat is missing or has a bad field: {exc}") from None
        if beat.status not in STATUSES:
            raise ValueError(f"heartbeat has an unknown status {beat.status!r}")
        return beat


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def write(layout: Layout, beat: Heartbeat) -> None:
    """Replace the agent's heartbeat file (atomic; not fsynced: it is stale after a crash)."""
    atomic.write_bytes(
        layout.heartbeat(beat.agent), json.dumps(asdict(beat), indent=2).encode(), durable=False
    )


def read(layout: Layout, agent: str) -> Heartbeat | None:
    """The agent's heartbeat; None if it has none or it cannot be read."""
    try:
        return Heartbeat.from_dict(_read(os.fspath(layout.heartbeat(agent))))
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class AgentInfo:
    """What `agent list` shows of one heartbeat file."""

    agent: str
    beat: Heartbeat | None
    problem: str | None


def _files(layout: Layout) -> list[tuple[str, str]]:
    """(agent, path) of every heartbeat file, in name order (temp files are dot files)."""
    folder = os.fspath(layout.agents)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    return [
        (name.removesuffix(".json"), f"{folder}/{name}")
        for name in names
        if not name.startswith(".") and name.endswith(".json")
    ]


def _read(path: str) -> Any:
    with open(path, "rb") as fh:
        return json.loads(fh.read())


def list_agents(layout: Layout) -> Iterator[AgentInfo]:
    """Every heartbeat file, readable or not, in name order."""
    for agent, path in _files(layout):
        try:
            beat = Heartbeat.from_dict(_read(path))
        except (OSError, ValueError) as exc:
            yield AgentInfo(agent, None, " ".join(str(exc).split()))
        else:
            yield AgentInfo(agent, beat, None)


def count_idle(layout: Layout, role: str | None, now: float, lease: float) -> int:
    """How many agents of `role` say they are idle, in a heartbeat younger than `lease`.

    Read at the moment of a claim, so only the three fields it needs are looked at (a third
    of the time `list_agents` takes); an unreadable file counts as no agent."""
    count = 0
    for _, path in _files(layout):
        try:
            doc = _read(path)
        except (OSError, ValueError):
            continue
        seen = doc.get("last_seen") if isinstance(doc, dict) else None
        if (
            isinstance(seen, (int, float))
            and doc.get("status") == "idle"
            and doc.get("role") == role
            and now - seen <= lease
        ):
            count += 1
    return count


def liveness(beat: Heartbeat, now: float, lease: float) -> str:
    """alive, stale (no heartbeat for a lease) or gone (stopped, or its process has died)."""
    if beat.status == "stopped":
        return GONE
    if beat.kind == "process" and beat.process.is_alive() is False:
        return GONE
    if now - beat.last_seen > lease:
        return STALE
    return ALIVE


def touch_session(
    layout: Layout, agent: str, *, role: str | None, task: str | None, status: str, now: float
) -> Heartbeat:
    """Refresh the heartbeat of an agent that drives itself (called by each of its commands)."""
    previous = read(layout, agent)
    beat = replace(
        Heartbeat.new(agent, role=role, now=now), kind="session", task=task, status=status
    )
    if previous is not None and previous.status != "stopped":
        beat = replace(
            beat,
            started=previous.started,
            seq=previous.seq + 1,
            done=previous.done,
            failed=previous.failed,
            role=role or previous.role,
        )
    write(layout, beat)
    return beat


class Heartbeater:
    """Writes an agent's heartbeat every `interval` seconds from a daemon thread.

    `lost` turns true once no heartbeat could be written for half the lease: from then on the
    agent must treat its claim as broken (stop work, do not merge).
    """

    def __init__(
        self,
        layout: Layout,
        beat: Heartbeat,
        *,
        interval: float,
        lease: float,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.layout = layout
        self.interval = interval
        self.lease = lease
        self._clock = clock
        self._monotonic = monotonic
        self._beat = beat
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_ok = monotonic()
        self._lost = False
        self.errors = 0

    @property
    def current(self) -> Heartbeat:
        return self._beat

    @property
    def lost(self) -> bool:
        """True once heartbeats stopped for half the lease, even if they have resumed since.

        During such a gap (a full disk, a SIGSTOP, a suspended laptop) the sweep may have
        broken the claim and given the task to someone else; only a new claim is safe.
        """
        return self._lost or self._monotonic() - self._last_ok > self.lease / 2

    def reset(self) -> None:
        """Forget an old gap: called when a new claim starts."""
        with self._lock:
            self._lost = False
            self._last_ok = self._monotonic()

    def note(self, **changes: Any) -> None:
        """Apply `changes` for the next write (a beat, or the thread's), without writing now."""
        with self._lock:
            self._beat = replace(self._beat, **changes)

    def beat(self, **changes: Any) -> bool:
        """Apply `changes` (task, status, done, failed...) and write now; False if it failed."""
        with self._lock:
            self._beat = replace(
                self._beat, **changes, last_seen=self._clock(), seq=self._beat.seq + 1
            )
            try:
                write(self.layout, self._beat)
            except OSError:
                self.errors += 1
                return False
            now = self._monotonic()
            if now - self._last_ok > self.lease / 2:
                self._lost = True
            self._last_ok = now
            return True

    def start(self) -> None:
        """Write the first heartbeat and keep writing in the background."""
        self.beat()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{self._beat.agent}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self, status: str = "stopped") -> None:
        """Stop the thread and write a last heartbeat with `status`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        with contextlib.suppress(OSError):
            self.beat(status=status, task=None)
