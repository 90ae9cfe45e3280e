from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stigmergy_cli import events

APPENDER = """
import sys
from pathlib import Path
from stigmergy_cli import events
for i in range(300):
    events.append(Path(sys.argv[1]), "claimed", 1.0, task=f"{sys.argv[2]}-{i}", pad="x" * 500)
"""


def test_append_and_read_round_trip(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    events.append(log, events.TASK_ADDED, 12.5, task="a", title="T", missing=None)
    events.append(log, events.CLAIMED, 13.0, task="a", agent="alpha")
    assert list(events.read(log)) == [
        {"ts": 12.5, "event": "task_added", "task": "a", "title": "T"},
        {"ts": 13.0, "event": "claimed", "task": "a", "agent": "alpha"},
    ]


def test_torn_and_foreign_lines_are_skipped(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    events.append(log, events.TASK_ADDED, 1.0, task="a")
    with log.open("ab") as fh:
        fh.write(b'[1, 2]\n{"no_event": 1}\n\xff\xfe\n{"ts": 2, "event": "clai')
    assert [e["task"] for e in events.read(log)] == ["a"]
    assert list(events.read(tmp_path / "absent.jsonl")) == []


def test_long_fields_are_cut_so_lines_stay_small(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    events.append(log, events.FAILED, 1.0, reason="x" * 10_000)
    (event,) = events.read(log)
    assert len(event["reason"]) == 2000


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(log), f"p{n}"]) for n in range(4)
    ]
    for proc in procs:
        assert proc.wait() == 0
    raw_lines = log.read_bytes().splitlines()
    assert len(raw_lines) == 1200
    assert all(json.loads(line)["pad"] == "x" * 500 for line in raw_lines)
