"""Claim locks: `locks/<id>.lock/` directories, one per claimed task.

Acquire is stage-then-publish: the claimer builds `locks/.stage-*` with owner.json inside and a
flock held on owner.lock, then renames it to `locks/<id>.lock`. rename(2) of a directory onto a
non-empty one fails, so exactly one claimer wins, and unlike a bare mkdir the lock is never
visible without its owner (docs/design.md, "Claims"). Breaking or removing a lock renames it to
a tombstone first, under the integration lock, so two removers never both act.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stigmergy_cli import atomic
from stigmergy_cli.errors import Conflict
from stigmergy_cli.oslock import FileLock, is_locked
from stigmergy_cli.paths import Layout
from stigmergy_cli.procinfo import ProcessId

OWNER_FILE = "owner.json"
OS_LOCK_FILE = "owner.lock"
_STAGE_PREFIX = ".stage-"
_TOMB_PREFIX = ".tomb-"


class NotOwner(Conflict):
    """The caller's token is not the one on the claim (it was swept, or never held)."""


@dataclass(frozen=True)
class Owner:
    """owner.json: who holds a claim, and the fencing token that proves it."""

    agent: str
    kind: str  # "agent" for work claims, "admin" for short edits by a command
    host: str
    boot_id: str
    pid: int
    pid_start: int | None
    claimed_at: float
    lease: float
    token: str  # "<attempt>.<random>": unique per claim, checked before every action
    # With liveness "process" the claiming process runs for the whole claim and holds the
    # flock (agent run, a command's short edit). With "session" an agent drives itself through
    # short CLI calls, and only its heartbeat file and the lease tell whether it is still there.
    liveness: str = "process"

    @property
    def process(self) -> ProcessId:
        return ProcessId(self.host, self.boot_id, self.pid, self.pid_start)

    @classmethod
    def new(
        cls,
        agent: str,
        kind: str,
        *,
        attempt: int,
        now: float,
        lease: float,
        liveness: str = "process",
    ) -> Owner:
        """An owner record for this process, with a fresh token."""
        me = ProcessId.current()
        return cls(
            agent=agent,
            kind=kind,
            host=me.host,
            boot_id=me.boot_id,
            pid=me.pid,
            pid_start=me.start,
            claimed_at=now,
            lease=lease,
            token=f"{attempt}.{os.urandom(8).hex()}",
            liveness=liveness,
        )

    @classmethod
    def from_dict(cls, doc: Any) -> Owner:
        """Validate a parsed owner.json; ValueError on anything malformed."""
        if not isinstance(doc, dict):
            raise ValueError("owner.json is not an object")  # noqa: TRY004 - callers catch ValueError
        try:
            owner = cls(
                agent=str(doc["agent"]),
                kind=str(doc.get("kind", "agent")),
                host=str(doc["host"]),
                boot_id=str(doc.get("boot_id", "")),
                pid=int(doc["pid"]),
                pid_start=None if doc.get("pid_start") is None else int(doc["pid_start"]),
                claimed_at=float(doc["claimed_at"]),
                lease=float(doc["lease"]),
                token=str(doc["token"]),
                liveness=str(doc.get("liveness", "process")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"owner.json is missing or has a bad field: {exc}") from None
        return owner


@dataclass
class Claim:
    """A lock this process holds, with the flock that tells the sweep we are alive."""

    task_id: str
    owner: Owner
    os_lock: FileLock

    def close(self) -> None:
        """Drop the flock (the lock directory itself is removed by `release`)."""
        self.os_lock.release()


@dataclass(frozen=True)
class LockInfo:
    """What `lock list` and the sweep see of one lock directory."""

    task_id: str
    path: Path
    owner: Owner | None
    problem: str | None  # why owner.json could not be read, if it could not
    mtime: float  # of the lock directory: when it was published
    held: bool  # a live process on this host holds its flock


def acquire(layout: Layout, task_id: str, owner: Owner) -> Claim | None:
    """Publish a claim on `task_id`; None if someone else holds it."""
    stage = layout.locks / f"{_STAGE_PREFIX}{task_id}-{os.urandom(4).hex()}"
    stage.mkdir(parents=False)
    os_lock = FileLock(stage / OS_LOCK_FILE)
    try:
        # The stage is ours alone until the rename below publishes it, so the owner file
        # needs no temp file of its own: written and fsynced here, it is whole when seen.
        atomic.write_new(stage / OWNER_FILE, atomic.json_bytes(asdict(owner)))
        if not os_lock.try_acquire():  # a fresh file: nobody else can hold it
            raise RuntimeError(f"could not lock the new file {os_lock.path}")  # noqa: TRY301
        os.rename(stage, layout.lock_dir(task_id))
    except OSError as exc:
        os_lock.release()
        shutil.rmtree(stage, ignore_errors=True)
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return None
        raise
    except BaseException:
        os_lock.release()
        shutil.rmtree(stage, ignore_errors=True)
        raise
    atomic.fsync_dir(layout.locks)
    return Claim(task_id, owner, os_lock)


def read_owner(lock_dir: Path) -> Owner:
    """Parse `lock_dir/owner.json`; ValueError or OSError when it is absent or malformed."""
    raw = (lock_dir / OWNER_FILE).read_bytes()
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"owner.json is not valid JSON: {exc}") from None
    return Owner.from_dict(doc)


def inspect(layout: Layout, task_id: str) -> LockInfo | None:
    """The lock on `task_id`, or None when it is not claimed."""
    path = layout.lock_dir(task_id)
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    owner: Owner | None = None
    problem: str | None = None
    try:
        owner = read_owner(path)
    except FileNotFoundError:
        problem = "no owner.json"
    except (OSError, ValueError) as exc:
        problem = str(exc)
    return LockInfo(task_id, path, owner, problem, mtime, is_locked(path / OS_LOCK_FILE))


def list_locks(layout: Layout) -> Iterator[LockInfo]:
    """Every published lock, in name order; staging and tombstone directories are skipped."""
    try:
        names = sorted(os.listdir(layout.locks))
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(".") or not name.endswith(".lock"):
            continue
        info = inspect(layout, name.removesuffix(".lock"))
        if info is not None:
            yield info


def integration_lock(layout: Layout) -> FileLock:
    """The one lock under which the target moves and claims are broken or removed."""
    return FileLock(layout.integration_lock)


def _entomb(layout: Layout, task_id: str, tag: str) -> Path | None:
    tomb = layout.locks / f"{_TOMB_PREFIX}{task_id}-{tag}-{os.urandom(4).hex()}"
    try:
        os.rename(layout.lock_dir(task_id), tomb)
    except FileNotFoundError:
        return None
    atomic.fsync_dir(layout.locks)
    return tomb


def remove(layout: Layout, task_id: str, token: str, agent: str) -> None:
    """Remove the claim carrying `token`. The caller holds the integration lock, or has just
    moved the task out of active/ under that claim (where nobody else contends for it).

    Refuses with NotOwner when the lock now carries another token: that claim was broken
    (and maybe taken by someone else), so it is not ours to remove.
    """
    try:
        current = read_owner(layout.lock_dir(task_id))
    except (OSError, ValueError):
        current = None
    if current is None or current.token != token:
        raise NotOwner(f"agent {agent!r} no longer holds the claim on {task_id!r}")
    tomb = _entomb(layout, task_id, "released")
    if tomb is not None:
        shutil.rmtree(tomb, ignore_errors=True)


def release(layout: Layout, claim: Claim) -> None:
    """Remove our own claim and drop its flock. The caller holds the integration lock."""
    try:
        remove(layout, claim.task_id, claim.owner.token, claim.owner.agent)
    finally:
        claim.close()


def break_lock(layout: Layout, task_id: str, token: str | None) -> Path | None:
    """Move a stale lock aside as a tombstone, if it is still the one judged stale.

    The caller holds the integration lock. `token` is the judged lock's token (None for a lock
    without a readable owner). Returns the tombstone, or None if the lock changed or vanished.
    """
    lock_dir = layout.lock_dir(task_id)
    try:
        current: str | None = read_owner(lock_dir).token
    except FileNotFoundError:
        current = None if lock_dir.exists() else "<gone>"
    except (OSError, ValueError):
        current = None
    if current != token:
        return None
    return _entomb(layout, task_id, "swept")


@contextlib.contextmanager
def exclusive(
    layout: Layout,
    task_id: str,
    *,
    who: str,
    now: float,
    lease: float,
    integration_held: bool = False,
) -> Iterator[Claim]:
    """Hold `task_id`'s lock for a short edit by a command, or raise Conflict if it is claimed.

    Pass `integration_held` when the caller already holds the integration lock (the sweep):
    flock is per open file, so taking it again in the same process would wait forever.
    """
    claim = acquire(layout, task_id, Owner.new(who, "admin", attempt=0, now=now, lease=lease))
    if claim is None:
        holder = inspect(layout, task_id)
        by = f" by agent {holder.owner.agent!r}" if holder and holder.owner else ""
        raise Conflict(f"task {task_id!r} is claimed{by}; try again when it is released")
    try:
        yield claim
    finally:
        if integration_held:
            release(layout, claim)
        else:
            with integration_lock(layout):
                release(layout, claim)
