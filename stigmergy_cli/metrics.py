"""Metrics read from the event log: what got done, how fast, by whom.

One pass over `events.jsonl`, holding only per-task timestamps, so 100,000 events take a
fraction of a second.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stigmergy_cli import events

THROUGHPUT_BUCKETS = 12


@dataclass
class Metrics:
    events: int = 0
    added: int = 0
    completions: int = 0
    failures: int = 0
    retries: int = 0
    conflicts: int = 0
    swept: int = 0
    rate_limited: int = 0
    mean_wait: float | None = None  # seconds from added to first claimed
    mean_run: float | None = None  # seconds from started to merged
    first: float | None = None
    last: float | None = None
    throughput: list[dict[str, float]] = field(default_factory=list)  # completions per bucket
    agents: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def per_minute(self) -> float:
        """Completions per minute between the first and the last event."""
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return self.completions / ((self.last - self.first) / 60)

    def to_json(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["per_minute"] = round(self.per_minute, 3)
        return doc


def collect(path: Path) -> Metrics:
    """Metrics of the whole log at `path`."""
    m = Metrics()
    added: dict[str, float] = {}
    waits: list[float] = []
    started: dict[str, float] = {}
    runs: list[float] = []
    done_at: list[float] = []
    per_agent: dict[str, Counter[str]] = defaultdict(Counter)
    for event in _fast_read(path):
        m.events += 1
        kind = event.get("event")
        ts = float(event.get("ts", 0.0))
        task = event.get("task")
        agent = event.get("agent")
        m.first = ts if m.first is None else min(m.first, ts)
        m.last = ts if m.last is None else max(m.last, ts)
        if kind == events.TASK_ADDED and isinstance(task, str):
            m.added += 1
            added[task] = ts
        elif kind == events.CLAIMED and isinstance(task, str):
            if task in added:
                waits.append(ts - added.pop(task))
            if isinstance(agent, str):
                per_agent[agent]["claimed"] += 1
        elif kind == events.STARTED and isinstance(task, str):
            started[task] = ts
        elif (kind == events.MERGED and "via" not in event) or kind == events.SUCCEEDED:
            m.completions += 1
            done_at.append(ts)
            if isinstance(task, str) and task in started:
                runs.append(ts - started.pop(task))
            if isinstance(agent, str):
                per_agent[agent]["done"] += 1
        elif kind == events.FAILED:
            m.failures += 1
            if event.get("state") == "pending":
                m.retries += 1
            if isinstance(agent, str):
                per_agent[agent]["failed"] += 1
        elif kind == events.CONFLICT:
            m.conflicts += 1
            if isinstance(agent, str):
                per_agent[agent]["conflicts"] += 1
        elif kind == events.SWEPT and event.get("action") == "reclaimed":
            m.swept += 1
            m.retries += 1
        elif kind == events.RELEASED and str(event.get("reason", "")).startswith("rate-limited"):
            m.rate_limited += 1
    m.mean_wait = round(sum(waits) / len(waits), 3) if waits else None
    m.mean_run = round(sum(runs) / len(runs), 3) if runs else None
    m.agents = {name: dict(counts) for name, counts in sorted(per_agent.items())}
    m.throughput = _buckets(done_at, m.first, m.last)
    return m


def _fast_read(path: Path) -> Any:
    """Event dicts; a line that does not look like one of ours is skipped without a parse."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return
    with fh:
        for raw in fh:
            if raw.startswith(b'{"ts":'):  # cheap: skip what cannot be ours without parsing
                record = events.parse(raw)
                if record is not None:
                    yield record


def _buckets(times: list[float], first: float | None, last: float | None) -> list[dict[str, float]]:
    if not times or first is None or last is None or last <= first:
        return []
    width = (last - first) / THROUGHPUT_BUCKETS
    counts = [0] * THROUGHPUT_BUCKETS
    for ts in times:
        counts[min(THROUGHPUT_BUCKETS - 1, int((ts - first) / width))] += 1
    return [
        {"start": round(first + i * width, 3), "seconds": round(width, 3), "completions": n}
        for i, n in enumerate(counts)
    ]
