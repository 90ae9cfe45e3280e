"""The pressure field: signals deposited on tasks, agents and roles, fading over time.

A signal is one line of `signals.jsonl`, appended with O_APPEND (no lock, no read-modify-write:
depositing never waits for a claim). Its pressure now is its intensity decayed from its time
by the configured strategy (decay.py), so nothing has to run for the field to be right;
`decay` only drops what has faded below epsilon, to keep the file small.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from stigmergy_cli import atomic, decay, tasks
from stigmergy_cli.config import PressureConfig
from stigmergy_cli.errors import InvalidInput
from stigmergy_cli.oslock import FileLock
from stigmergy_cli.paths import Layout

# Kinds deposited by stigmergy itself; people and agents may use any other word too.
SKIP = "skip"
FAILURE = "failure"
DEPENDENCY_DONE = "dependency_done"
CONFLICT = "conflict"
URGENT = "urgent"
BOOST = "boost"

TARGET_KINDS = ("task", "agent", "role")
_KIND_RE = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
MAX_META = 4096


@dataclass(frozen=True)
class Signal:
    kind: str
    intensity: float  # -1.0 to 1.0
    target: str  # "task:<id>", "agent:<id>" or "role:<role>"
    at: float
    agent: str | None = None  # who deposited it
    meta: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""

    @property
    def key(self) -> str:
        """What the stochastic strategy's jitter is seeded with: stable for this signal."""
        return self.id or f"{self.target}/{self.at}"

    def now(self, now: float, cfg: PressureConfig) -> float:
        """This signal's pressure at `now`."""
        return decay.pressure_now(self.intensity, self.at, now, cfg, self.key)


def target(kind: str, name: str) -> str:
    """A target string, e.g. target("task", "fix-login") == "task:fix-login"."""
    if kind not in TARGET_KINDS:
        raise InvalidInput(f"a signal targets a task, an agent or a role, not {kind!r}")
    return f"{kind}:{name}"


def parse_target(task: str | None, agent: str | None, role: str | None) -> str:
    """The one target named by a --task/--agent/--role triple (exactly one must be given)."""
    given = [(k, v) for k, v in (("task", task), ("agent", agent), ("role", role)) if v is not None]
    if len(given) != 1:
        raise InvalidInput("name exactly one target: --task ID, --agent AGENT or --role ROLE")
    kind, name = given[0]
    if kind == "role":
        tasks.validate_name(name, "role")
    else:
        tasks.validate_id(name, f"{kind} id")
    return target(kind, name)


def validate(signal: Signal) -> Signal:
    """Refuse a malformed signal with one clear line (InvalidInput)."""
    if not _KIND_RE.fullmatch(signal.kind):
        raise InvalidInput(
            f"invalid signal kind {signal.kind!r}: a lowercase word of up to 32 characters"
        )
    if isinstance(signal.intensity, bool) or not -1.0 <= float(signal.intensity) <= 1.0:
        raise InvalidInput(f"signal intensity must be from -1.0 to 1.0, not {signal.intensity!r}")
    kind, _, name = signal.target.partition(":")
    if kind not in TARGET_KINDS or not name or any(c.isspace() for c in name):
        raise InvalidInput(
            f"invalid signal target {signal.target!r}: use task:ID, agent:ID or role:NAME"
        )
    if len(json.dumps(dict(signal.meta), default=str)) > MAX_META:
        raise InvalidInput(f"signal metadata is larger than {MAX_META} bytes")
    return signal


class Field:
    """The signals of one environment."""

    def __init__(self, layout: Layout, cfg: PressureConfig) -> None:
        self.path = layout.signals
        self.lock_path = layout.locks / ".signals.lock"
        self.cfg = cfg

    def deposit(self, signal: Signal) -> Signal:
        """Append a signal (validated; given an id if it has none)."""
        validate(signal)
        if not signal.id:
            signal = Signal(**{**asdict(signal), "id": os.urandom(6).hex()})
        line = json.dumps(asdict(signal), separators=(",", ":"), default=str) + "\n"
        # Shared: deposits never wait for each other, only for an evaporation's rewrite.
        with FileLock(self.lock_path, shared=True):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        return signal

    def all(self) -> Iterator[Signal]:
        """Every stored signal; torn or foreign lines are skipped."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return
        with fh:
            for raw in fh:
                try:
                    doc = json.loads(raw)
                    yield Signal(
                        kind=str(doc["kind"]),
                        intensity=float(doc["intensity"]),
                        target=str(doc["target"]),
                        at=float(doc["at"]),
                        agent=doc.get("agent"),
                        meta=doc.get("meta") or {},
                        id=str(doc.get("id", "")),
                    )
                except (ValueError, KeyError, TypeError):
                    continue

    def pressures(self, now: float) -> dict[str, float]:
        """The pressure on every target at `now` (one pass over the store).

        The hot path of every claim and listing: lines are summed straight from JSON, without
        building Signal objects, and exponential decay (the default) is inlined.
        """
        totals: dict[str, float] = defaultdict(float)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        cfg = self.cfg
        exponential = cfg.strategy == "exponential"
        half_life = cfg.half_life
        loads = json.loads
        for raw in data.splitlines():
            try:
                doc = loads(raw)
                intensity = float(doc["intensity"])
                elapsed = now - float(doc["at"])
                target_name = doc["target"]
            except (ValueError, KeyError, TypeError):
                continue
            if exponential:
                totals[target_name] += intensity * 0.5 ** (max(0.0, elapsed) / half_life)
            else:
                key = str(doc.get("id") or f"{target_name}/{doc['at']}")
                totals[target_name] += decay.decayed(intensity, elapsed, cfg, key)
        return dict(totals)

    def read(self, targets: Iterable[str], now: float) -> float:
        """The summed pressure on `targets` at `now`."""
        wanted = set(targets)
        return sum(s.now(now, self.cfg) for s in self.all() if s.target in wanted)

    def evaporate(self, now: float) -> tuple[int, int]:
        """Drop signals whose pressure fell below epsilon; returns (dropped, kept).

        Rewrites the store atomically under the exclusive lock, which deposits share.
        """
        with FileLock(self.lock_path):
            try:
                data = self.path.read_bytes()
            except FileNotFoundError:
                return 0, 0
            kept_lines: list[bytes] = []
            dropped = 0
            for raw in data.splitlines(keepends=True):
                try:
                    doc = json.loads(raw)
                    signal = Signal(
                        kind=doc["kind"],
                        intensity=float(doc["intensity"]),
                        target=doc["target"],
                        at=float(doc["at"]),
                        id=str(doc.get("id", "")),
                    )
                except (ValueError, KeyError, TypeError):
                    dropped += 1
                    continue
                if abs(signal.now(now, self.cfg)) < self.cfg.epsilon:
                    dropped += 1
                else:
                    kept_lines.append(raw if raw.endswith(b"\n") else raw + b"\n")
            if dropped:
                atomic.write_bytes(self.path, b"".join(kept_lines))
            return dropped, len(kept_lines)
