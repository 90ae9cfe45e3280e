"""events.jsonl: an append-only log of what happened, one JSON object per line.

Appends use O_APPEND and a single write, so lines from concurrent processes never interleave.
The log is for people and metrics; the task files remain the truth, so it is not fsynced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

# Event names, as SPEC section 3 lists them.
TASK_ADDED = "task_added"
CLAIMED = "claimed"
SKIPPED = "skipped"
STARTED = "started"
SUCCEEDED = "succeeded"
FAILED = "failed"
MERGED = "merged"
CONFLICT = "conflict"
RELEASED = "released"
SWEPT = "swept"
DECAYED = "decayed"
CANCELLED = "cancelled"
RETRIED = "retried"
BOOSTED = "boosted"
QUARANTINED = "quarantined"
AGENT_STARTED = "agent_started"
AGENT_STOPPED = "agent_stopped"

_MAX_FIELD = 2000  # long reasons are cut so a line stays one small write


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_FIELD:
        return value[: _MAX_FIELD - 3] + "..."
    return value


def _line(event: str, now: float, fields: Mapping[str, Any]) -> str:
    record = {"ts": round(now, 6), "event": event}
    record.update({k: _bounded(v) for k, v in fields.items() if v is not None})
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


def append(path: Path, event: str, now: float, **fields: Any) -> None:
    """Append one event to the log at `path`."""
    _write(path, _line(event, now, fields).encode())


def append_all(path: Path, records: Iterable[tuple[str, float, Mapping[str, Any]]]) -> None:
    """Append many events (event, time, fields) in one write."""
    _write(path, "".join(_line(*record) for record in records).encode())


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        while data:  # a regular file takes it whole unless the disk is full
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


def read(path: Path) -> Iterator[dict[str, Any]]:
    """Every well-formed event in order; torn or foreign lines are skipped."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            record = parse(raw)
            if record is not None:
                yield record


def parse(raw: bytes) -> dict[str, Any] | None:
    """One line of the log as an event, or None for a torn or foreign line."""
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(record, dict) and isinstance(record.get("event"), str):
        return record
    return None


def follow(path: Path, start: int, poll: float = 0.2) -> Iterator[dict[str, Any]]:
    """Events appended after byte `start`, as they arrive (a `tail -f`); never returns."""
    import time

    position = start
    pending = b""
    while True:
        try:
            with path.open("rb") as fh:
                fh.seek(position)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        if not chunk:
            time.sleep(poll)
            continue
        position += len(chunk)
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            record = parse(raw)
            if record is not None:
                yield record
