from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stigmergy_cli import locks
from stigmergy_cli.errors import Conflict
from stigmergy_cli.oslock import is_locked
from stigmergy_cli.paths import Layout

NOW = 1_800_000_000.0

RACER = """
import sys, time
from pathlib import Path
from stigmergy_cli import locks
from stigmergy_cli.paths import Layout
layout = Layout(Path(sys.argv[1]))
go = float(sys.argv[3])
while time.time() < go:
    pass
owner = locks.Owner.new(sys.argv[2], "agent", attempt=1, now=time.time(), lease=60)
print("won" if locks.acquire(layout, "contested", owner) else "lost", flush=True)
"""


def _owner(agent: str = "alpha") -> locks.Owner:
    return locks.Owner.new(agent, "agent", attempt=1, now=NOW, lease=60)


@pytest.fixture
def layout(env_root: Path) -> Layout:
    return Layout(env_root)


def test_one_claim_per_task(layout: Layout) -> None:
    first = locks.acquire(layout, "t", _owner("alpha"))
    assert first is not None
    assert locks.acquire(layout, "t", _owner("beta")) is None
    info = locks.inspect(layout, "t")
    assert info is not None
    assert info.owner == first.owner
    assert info.held  # our flock is on it
    assert [i.task_id for i in locks.list_locks(layout)] == ["t"]
    assert [p.name for p in layout.locks.iterdir() if p.name.startswith(".stage")] == []
    with locks.integration_lock(layout):
        locks.release(layout, first)
    assert locks.inspect(layout, "t") is None
    assert [p.name for p in layout.locks.iterdir() if not p.name.startswith(".")] == []


def test_release_by_a_stale_holder_is_refused(layout: Layout) -> None:
    stale = locks.acquire(layout, "t", _owner("alpha"))
    assert stale is not None
    # The claim is broken and taken by another agent (what the sweep will do).
    layout.lock_dir("t").rename(layout.locks / ".tomb-t-test")
    fresh = locks.acquire(layout, "t", _owner("beta"))
    assert fresh is not None
    with locks.integration_lock(layout), pytest.raises(locks.NotOwner, match="no longer holds"):
        locks.release(layout, stale)
    info = locks.inspect(layout, "t")
    assert info is not None
    assert info.owner == fresh.owner


def test_exclusive_names_the_holder(layout: Layout) -> None:
    claim = locks.acquire(layout, "t", _owner("alpha"))
    assert claim is not None
    with (
        pytest.raises(Conflict, match="claimed by agent 'alpha'"),
        locks.exclusive(layout, "t", who="me", now=NOW, lease=60),
    ):
        pass
    claim.close()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"[]",
        b'{"agent": "a"}',
        b'{"agent": "a", "host": "h", "pid": "x", "claimed_at": 1, "lease": 1, "token": "t"}',
        b"\xff",
    ],
)
def test_unreadable_owner_files_are_reported_not_raised(layout: Layout, content: bytes) -> None:
    lock_dir = layout.lock_dir("t")
    lock_dir.mkdir()
    (lock_dir / "owner.json").write_bytes(content)
    (info,) = locks.list_locks(layout)
    assert info.owner is None
    assert info.problem
    assert not info.held


def test_a_lock_without_owner_file_is_listed(layout: Layout) -> None:
    layout.lock_dir("t").mkdir()
    (info,) = locks.list_locks(layout)
    assert info.problem == "no owner.json"


def test_owner_json_is_plain_json(layout: Layout) -> None:
    claim = locks.acquire(layout, "t", _owner())
    assert claim is not None
    doc = json.loads((layout.lock_dir("t") / "owner.json").read_text())
    assert doc["agent"] == "alpha"
    assert doc["token"].startswith("1.")
    assert set(doc) == {
        "agent",
        "kind",
        "host",
        "boot_id",
        "pid",
        "pid_start",
        "claimed_at",
        "lease",
        "token",
        "liveness",
    }
    claim.close()


@pytest.mark.slow
def test_processes_racing_for_one_task_have_exactly_one_winner(layout: Layout) -> None:
    import time

    for _ in range(5):
        go = time.time() + 0.6
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RACER, str(layout.root), f"agent{n}", str(go)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for n in range(16)
        ]
        outcomes = [p.communicate()[0].strip() for p in procs]
        assert sorted(outcomes) == ["lost"] * 15 + ["won"]
        assert [p.name for p in layout.locks.iterdir() if p.name.startswith(".stage")] == []
        layout.lock_dir("contested").joinpath("owner.json").unlink()
        layout.lock_dir("contested").joinpath("owner.lock").unlink()
        layout.lock_dir("contested").rmdir()


_HOLDS_THEN_DIES = """
import os, signal, subprocess, sys
from pathlib import Path
from stigmergy_cli.oslock import FileLock
lock = FileLock(Path(sys.argv[1]))
lock.acquire()
quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
child = subprocess.Popen(["sleep", "1"], pass_fds=(lock.fileno(),), **quiet)
print(child.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_child_given_the_lock_holds_it_after_its_parent_dies(tmp_path: Path) -> None:
    # The integration lock's holder passes it to the git that moves the user's checkout: if
    # the holder is killed, the next merge there must wait for that git to finish.
    path = tmp_path / "lock"
    parent = subprocess.run(
        [sys.executable, "-c", _HOLDS_THEN_DIES, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert parent.returncode == -signal.SIGKILL
    child = int(parent.stdout)
    assert is_locked(path)  # the parent is gone, its child still runs
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_locked(path)
