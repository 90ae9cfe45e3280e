"""An executor never outlives its agent's claim, nor works on in a worktree that moved on.

Executors run in a session of their own, so that a timeout or a Ctrl-C stops everything they
started; the price is that killing the agent (`kill -9`, the OOM killer, a closed terminal)
does not stop them. Left alone, such an orphan keeps spending money and keeps writing into
a worktree that its agent, restarted, is already using for another task. Two things close
that gap:

- Every process of the executor inherits one open file, `locks/.exec-<agent>.lock`, flocked
  by the agent on a descriptor it hands to the executor. The kernel drops a flock only when
  the last descriptor on it is closed, so whoever of the executor is still alive holds it:
  "is anything still at work in this worktree?" is a flock test, and `/proc` says who.
- The executor's session, noted in the agent's heartbeat, finds the few processes that close
  the descriptors they inherited.

The agent checks the lock after each executor and before it resets its worktree, and stops
what is left; an agent starting under an id stops what its predecessor left; the sweep stops
the executor of a claim it breaks on this host, and any executor whose agent is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stigmergy_cli import heartbeats
from stigmergy_cli.errors import StigmergyError
from stigmergy_cli.heartbeats import Heartbeat
from stigmergy_cli.oslock import FileLock, is_locked
from stigmergy_cli.paths import Layout

_PREFIX, _SUFFIX = ".exec-", ".lock"
STOP_WAIT = 10.0  # seconds to wait for killed processes to let go of the lock


class WorktreeBusy(StigmergyError):
    """A process of an earlier executor still works in the worktree and cannot be stopped."""


@dataclass(frozen=True)
class Session:
    """An executor's first process: its pid is also its session's and process group's id."""

    pid: int
    start: int | None  # clock ticks since boot, to tell a reused pid apart


def busy(layout: Layout, agent: str) -> bool:
    """Does some process of an executor of `agent` still run (on this machine)?"""
    return is_locked(layout.executor_lock(agent))


class Hold:
    """The agent's executor lock, held on a descriptor to hand to the executor."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError("the executor lock was handed over already")
        return self._fd

    def hand_over(self) -> None:
        """The executor has its own copy now: from here on only its processes hold the lock
        (so that a sweep stopping them never takes the agent for one of them)."""
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # never LOCK_UN: that would release the lock the executor holds


@contextlib.contextmanager
def held_for_executor(layout: Layout, agent: str) -> Iterator[Hold]:
    """The agent's executor lock, to hand to the executor (`pass_fds`, then `hand_over`).

    Whatever of an earlier executor still holds the lock is stopped first. Once the
    executor's process group is gone, the lock being free means nothing of it is left; if
    it is not, what is left (a process that escaped the group) is stopped too."""
    path = layout.executor_lock(agent)
    hold = Hold(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
    try:
        if not _try_flock(hold.fileno()):
            stop(layout, agent)
            if not _try_flock(hold.fileno()):
                raise WorktreeBusy(f"{path} is still held after stopping its holders")
        yield hold
    finally:
        hold.close()
    if busy(layout, agent):
        stop(layout, agent)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def stop(layout: Layout, agent: str, session: Session | None = None) -> list[int]:
    """SIGKILL every process that holds the agent's executor lock or belongs to `session`,
    and wait until the lock is free. Returns the pids killed; raises WorktreeBusy when a
    holder cannot be stopped (another user's process, or one stuck in the kernel)."""
    path = layout.executor_lock(agent)
    killed: list[int] = []
    refused: list[int] = []
    deadline = time.monotonic() + STOP_WAIT
    while True:
        targets = set(holders(path))
        if session is not None:
            targets.update(members(session, layout.workspace(agent)))
            session = None  # once: what it started later holds the lock, or was killed with it
        targets -= {os.getpid(), *killed, *refused}
        for pid in sorted(targets):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            except PermissionError:
                refused.append(pid)
                continue
            killed.append(pid)
        if not is_locked(path):
            return killed
        if refused or time.monotonic() > deadline:
            who = ", ".join(map(str, refused or holders(path))) or "unknown processes"
            raise WorktreeBusy(
                f"a process of an earlier executor of agent {agent!r} still works in its "
                f"worktree and could not be stopped (pid {who}); stop it, then start again"
            )
        time.sleep(0.01)


def stop_abandoned(layout: Layout, agent: str, session: Session | None = None) -> list[int] | None:
    """Stop the executor of an agent that is gone from this machine: None, touching nothing,
    while its `agent run` is alive. Its instance lock is held meanwhile, so the agent cannot
    start again and begin a new executor that this would take for the old one."""
    if not busy(layout, agent):
        return []
    instance = FileLock(layout.agent_lock(agent))
    if not instance.try_acquire():
        return None
    try:
        return stop(layout, agent, session)
    finally:
        instance.release()


def abandoned(layout: Layout) -> list[str]:
    """Agents whose executor still runs on this machine while the agent itself is gone."""
    try:
        names = os.listdir(layout.locks)
    except FileNotFoundError:
        return []
    agents = (
        name[len(_PREFIX) : -len(_SUFFIX)]
        for name in sorted(names)
        if name.startswith(_PREFIX) and name.endswith(_SUFFIX)
    )
    return [a for a in agents if busy(layout, a) and not is_locked(layout.agent_lock(a))]


def stop_all_abandoned(layout: Layout) -> Iterator[tuple[str, list[int] | str]]:
    """Stop every executor whose agent is gone from this machine: (agent, the pids killed,
    or why they could not be)."""
    for agent in abandoned(layout):
        session = session_in(heartbeats.read(layout, agent))
        try:
            killed = stop_abandoned(layout, agent, session)
        except WorktreeBusy as exc:
            yield agent, str(exc)
            continue
        if killed:
            yield agent, killed


def holders(path: Path) -> list[int]:
    """Processes with a descriptor open on `path` (those this user may look at)."""
    try:
        st = path.stat()
    except OSError:
        return []
    wanted = (st.st_dev, st.st_ino)
    found = []
    for pid in _pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                fst = Path(f"/proc/{pid}/fd/{fd}").stat()
            except OSError:
                continue
            if (fst.st_dev, fst.st_ino) == wanted:
                found.append(pid)
                break
    return found


def members(session: Session, worktree: Path) -> list[int]:
    """Processes of the executor's session that started no earlier than its first process,
    and whose environment names the agent's worktree as every executor's does: a session id
    is a pid, and a reused one must never make us kill someone else's processes."""
    marker = b"STIGMERGY_WORKTREE=" + os.fsencode(worktree) + b"\0"
    found = []
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        try:
            sid, started = int(fields[3]), int(fields[19])
        except (IndexError, ValueError):
            continue
        if sid != session.pid or (session.start is not None and started < session.start):
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ:
            found.append(pid)
    return found


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:  # no /proc (not Linux): the lock still tells, but nobody can be named
        return []


def session_in(beat: Heartbeat | None) -> Session | None:
    """The session of the executor an agent's heartbeat says it is running, if any."""
    if beat is None or beat.executor_pid is None:
        return None
    return Session(beat.executor_pid, beat.executor_start)
