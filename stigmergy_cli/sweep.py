"""The sweep: give the tasks of dead agents back, repair what crashes left, tidy up.

Safe from cron and from many processes at once: everything that breaks a lock or moves a task
happens under the integration lock, and each lock is re-checked (by its token) just before it
is broken, so two sweepers never reclaim the same claim twice. It never deletes a worktree,
a branch or a task file: unreadable files are moved to tasks/corrupt/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stigmergy_cli import defaults, events, gitops, heartbeats, locks, merge, orphans, signals
from stigmergy_cli.claims import deposit, max_attempts, requeue_after_failure
from stigmergy_cli.config import Config
from stigmergy_cli.errors import Conflict, StigmergyError
from stigmergy_cli.heartbeats import Heartbeat
from stigmergy_cli.locks import LockInfo
from stigmergy_cli.oslock import is_locked
from stigmergy_cli.paths import LIVE_STATES, STATES
from stigmergy_cli.store import Problem, TaskRecord, TaskStore


def stale_reason(info: LockInfo, beat: Heartbeat | None, now: float, grace: float) -> str | None:
    """Why the claim `info` is stale, or None while its holder may still be alive."""
    owner = info.owner
    if owner is None:
        if info.held:  # somebody alive holds its flock: being written, or a foreign tool
            return None
        age = now - info.mtime
        return f"{info.problem} for {age:.0f}s" if age > grace else None
    if owner.liveness == "process":
        process = owner.process
        if process.is_local():
            # The kernel drops a flock when its holder dies, however it dies.
            if not info.held:
                return f"holder process {owner.pid} on {owner.host} is gone"
            if process.is_alive() is False:
                return f"holder process {owner.pid} on {owner.host} is gone (pid reused)"
        # Only this very process's heartbeat counts: an agent restarted under the same name
        # must not keep its predecessor's claim alive.
        same = beat is not None and beat.pid == owner.pid and beat.host == owner.host
        last = (
            max(owner.claimed_at, beat.last_seen) if same and beat is not None else owner.claimed_at
        )
    else:  # a self-driving session: any call by that agent counts
        last = owner.claimed_at
        if beat is not None and beat.agent == owner.agent:
            last = max(last, beat.last_seen)
    silent = now - last
    if silent > owner.lease:
        return f"no heartbeat from agent {owner.agent!r} for {silent:.0f}s (lease {owner.lease:g}s)"
    return None


@dataclass(frozen=True)
class Action:
    """One thing the sweep did (or, with --dry-run, would do)."""

    # reclaimed | reconciled | landed | conflicted | finished | lock_removed | quarantined |
    # cleaned | stopped (an executor's processes)
    kind: str
    target: str  # a task id, or a path relative to .stigmergy/
    reason: str
    agent: str | None = None
    to_state: str | None = None


@dataclass
class SweepReport:
    dry_run: bool
    actions: list[Action] = field(default_factory=list)
    live_locks: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "live_locks": self.live_locks,
            "actions": [asdict(a) for a in self.actions],
        }


class Sweeper:
    """One pass of the sweep over an environment at time `now`."""

    def __init__(
        self, store: TaskStore, cfg: Config, now: float, *, dry_run: bool, history: bool = True
    ) -> None:
        self.store = store
        self.layout = store.layout
        self.cfg = cfg
        self.now = now
        self.dry_run = dry_run
        # Also look for unreadable files among finished tasks (done/, failed/, cancelled/),
        # which grow for as long as the pool lives: what cron's sweep does, not an agent's.
        self.history = history
        self.grace = defaults.CLAIM_GRACE
        self.report = SweepReport(dry_run)

    def run(self, *, wait: bool = True) -> SweepReport | None:
        """Sweep once. Waits for the integration lock (a merge in progress) unless dry; with
        `wait=False`, returns None at once if someone holds it (agents sweep in passing)."""
        lock = None if self.dry_run else locks.integration_lock(self.layout)
        if lock is not None and not wait and not lock.try_acquire():
            return None
        try:
            # Reading every task file is the longest step and needs no lock, so a sweep that
            # waits does it before taking the one merges wait for; each file it found is
            # looked at again under it.
            suspects = self._unreadable()
            if lock is not None and wait:
                lock.acquire()
            if not self.dry_run:
                self.store.recover_imports()
            self._reclaim_stale_locks()
            self._stop_abandoned_executors()
            self._reconcile_active()
            self._quarantine(suspects)
            self._clean()
        finally:
            if lock is not None:
                lock.release()
        if not self.dry_run:
            gitops.maintain(self.layout.root)
        return self.report

    def _do(self, action: Action) -> None:
        self.report.actions.append(action)
        if not self.dry_run:
            events.append(
                self.layout.events,
                events.QUARANTINED if action.kind == "quarantined" else events.SWEPT,
                self.now,
                task=action.target,
                action=action.kind,
                agent=action.agent,
                reason=action.reason,
                state=action.to_state,
            )

    # -- claims ----------------------------------------------------------------------------

    def _reclaim_stale_locks(self) -> None:
        beats = {a.agent: a.beat for a in heartbeats.list_agents(self.layout) if a.beat}
        for info in locks.list_locks(self.layout):
            agent = info.owner.agent if info.owner else None
            reason = stale_reason(info, beats.get(agent) if agent else None, self.now, self.grace)
            if reason is None:
                self.report.live_locks += 1
                continue
            if not self.dry_run:
                token = info.owner.token if info.owner else None
                if locks.break_lock(self.layout, info.task_id, token) is None:
                    continue  # released or replaced since we looked: not stale any more
            if info.owner is not None:  # before the task can go to anyone else
                self._stop_executor(info.owner, info.task_id, beats.get(info.owner.agent))
            located = self.store.locate(info.task_id)
            if located is not None and located[0] == "active":
                since = info.owner.claimed_at if info.owner else None
                self._requeue(info.task_id, reason, agent, claimed_at=since)
            else:
                self._do(Action("lock_removed", info.task_id, reason, agent))
                if located is not None and not self.dry_run:
                    # Its resolution may have landed while the dead claim kept it from being
                    # marked merged (merge._complete_originals).
                    merge.complete_resolved(self.store, self.cfg, info.task_id, self.now)

    def _stop_executor(self, owner: locks.Owner, task_id: str, beat: Heartbeat | None) -> None:
        """Stop the executor of a claim being broken, if it runs on this machine: it must not
        go on spending and writing once the task can go to someone else. Its holder may be
        dead (its executor an orphan), or alive and paused past its lease (then only if its
        heartbeat says it is at work on this very task: it may have moved on)."""
        if not owner.process.is_local():
            return  # on another machine the lease and the token keep its result out
        if owner.process.is_alive():
            if beat is None or beat.pid != owner.pid or beat.task != task_id:
                return
            self._stop(owner.agent, task_id, orphans.session_in(beat), abandoned=False)
        else:
            self._stop(owner.agent, task_id, orphans.session_in(beat), abandoned=True)

    def _stop_abandoned_executors(self) -> None:
        """Stop the executors of agents gone from this machine, whatever became of their
        claims (given back by Ctrl-C twice, broken earlier, or held on a git remote)."""
        if self.dry_run:
            for agent in orphans.abandoned(self.layout):
                self._do(Action("stopped", _exec_lock(agent), "would be stopped", agent))
            return
        for agent, killed in orphans.stop_all_abandoned(self.layout):
            self._do(Action("stopped", _exec_lock(agent), _stopped(killed), agent))

    def _stop(
        self, agent: str, target: str, session: orphans.Session | None, *, abandoned: bool
    ) -> None:
        """Stop what runs of `agent`'s executor; `abandoned`: only if its agent is gone."""
        if self.dry_run:
            gone = not is_locked(self.layout.agent_lock(agent))
            if orphans.busy(self.layout, agent) and (gone or not abandoned):
                self._do(Action("stopped", target, "its executor would be stopped", agent))
            return
        killed: list[int] | str | None
        try:
            if abandoned:
                killed = orphans.stop_abandoned(self.layout, agent, session)
            else:
                killed = orphans.stop(self.layout, agent, session)
        except orphans.WorktreeBusy as exc:
            killed = str(exc)
        if killed:
            self._do(Action("stopped", target, _stopped(killed), agent))

    def _reconcile_active(self) -> None:
        for record in self.store.scan(self.now, states=("active",)).records:
            # No claim makes a task active without holding its lock first, and locks are only
            # removed under the integration lock (which we hold): this is a crash's leftover.
            if locks.inspect(self.layout, record.task.id) is None:
                self._requeue(record.task.id, "active without a claim", None, kind="reconciled")

    def _requeue(
        self,
        task_id: str,
        reason: str,
        agent: str | None,
        kind: str = "reclaimed",
        claimed_at: float | None = None,
    ) -> None:
        """Count a lost attempt and put the task back (or in failed/ at its limit); or, if the
        claim's result is already on the target, record it as merged: never run a task twice.
        A holder that died once its outcome was in the task's file is finished for it."""
        if claimed_at is not None and self._finish_recorded(task_id, reason, agent, claimed_at):
            return
        unrecorded = merge.unrecorded_outcome(self.store, self.cfg, task_id, claimed_at)
        if unrecorded is not None:
            commit = (unrecorded.result or "")[:10]
            if unrecorded.merged:
                kind, why = "landed", f"its result {commit} is already on {self.cfg.target}"
            else:
                resolver = unrecorded.conflict_task
                kind, why = "conflicted", f"its result conflicted, for {resolver} to resolve"
            self._record_done(task_id, agent, unrecorded, kind, f"{reason}; {why}")
            return
        result = {"outcome": "swept", "agent": agent, "reason": reason, "finished_at": self.now}
        if self.dry_run:
            seen = self.store.get(task_id)
            _, to_state = requeue_after_failure(seen.task, self.cfg, self.now, result)
            self._do(Action(kind, task_id, reason, agent, to_state))
            return
        try:
            with self._still_active(task_id) as record:
                if record is None:
                    return
                task, to_state = requeue_after_failure(record.task, self.cfg, self.now, result)
                self.store.write(record, task, to_state)
            if to_state == "pending":
                failure = self.cfg.pressure.signal_failure
                deposit(self.store, self.cfg, signals.FAILURE, task_id, failure, "sweep", self.now)
        except Conflict:
            return  # an agent grabbed the lock meanwhile; the next sweep reconciles
        detail = f"{reason}; attempt {task.attempts} of {max_attempts(task, self.cfg)}"
        self._do(Action(kind, task_id, detail, agent, to_state))

    @contextlib.contextmanager
    def _still_active(self, task_id: str) -> Iterator[TaskRecord | None]:
        """The task under a short claim of the sweep's own, or None if it is no longer active;
        Conflict if an agent holds its lock now."""
        with locks.exclusive(
            self.layout,
            task_id,
            who="sweep",
            now=self.now,
            lease=self.cfg.lease,
            integration_held=True,
        ):
            record = self.store.get(task_id)
            yield record if record.state == "active" else None

    def _finish_recorded(
        self, task_id: str, reason: str, agent: str | None, claimed_at: float
    ) -> bool:
        """Move to done/ a task whose holder recorded its claim's outcome and died before
        moving it there (merge.record_done); False if it recorded none."""
        seen = self.store.get(task_id)
        outcome = merge.recorded_outcome(seen.task, claimed_at)
        if outcome is None:
            return False
        detail = f"{reason}; its outcome ({outcome}) was already recorded"
        if not self.dry_run:
            try:
                with self._still_active(task_id) as record:
                    if record is None or merge.recorded_outcome(record.task, claimed_at) is None:
                        return True  # moved on since we looked
                    self.store.move(record, "done")
            except Conflict:
                return True  # an agent grabbed the lock meanwhile; the next sweep reconciles
            if outcome in ("merged", "unchanged"):
                result = record.task.result or {}
                commit = result.get("merge_commit") or result.get("commit")
                self._announce_merged(task_id, agent, outcome, commit, detail)
        self._do(Action("finished", task_id, detail, agent, "done"))
        return True

    def _record_done(
        self, task_id: str, agent: str | None, outcome: merge.Outcome, kind: str, detail: str
    ) -> None:
        """The holder died after integrating (the target took its result, or its conflict task
        was made) and before the task said so: record the outcome as the holder would have."""
        if not self.dry_run:
            try:
                with self._still_active(task_id) as record:
                    if record is None:
                        return
                    merge.record_done(
                        self.store, self.cfg, record, agent or "sweep", outcome, self.now, None
                    )
            except Conflict:
                return  # an agent grabbed the lock meanwhile; the next sweep reconciles
            if outcome.merged:
                self._announce_merged(task_id, agent, outcome.kind, outcome.result, detail)
            else:  # a conflict, which may have been resolved meanwhile
                merge.complete_resolved(self.store, self.cfg, task_id, self.now)
        self._do(Action(kind, task_id, detail, agent, "done"))

    def _announce_merged(
        self, task_id: str, agent: str | None, outcome: str, commit: object, detail: str
    ) -> None:
        """The `merged` event its dead holder did not live to write."""
        events.append(
            self.layout.events,
            events.MERGED,
            self.now,
            task=task_id,
            agent=agent,
            outcome=outcome,
            commit=commit,
            detail=f"recorded by the sweep: {detail}",
        )

    # -- files -----------------------------------------------------------------------------

    def _unreadable(self) -> list[Problem]:
        """Task files that could not be read (a task in two states is not one of them)."""
        states = STATES if self.history else LIVE_STATES
        problems = self.store.scan(self.now, states=states).problems
        return [problem for problem in problems if not problem.duplicate]

    def _quarantine(self, suspects: list[Problem]) -> None:
        for problem in suspects:
            path = problem.path
            if not self._still_unreadable(path):
                continue
            target = self.layout.corrupt / f"{path.parent.name}.{path.name}.{int(self.now)}"
            if not self.dry_run:
                self.layout.corrupt.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(path, target)
                except OSError:
                    continue
            self._do(Action("quarantined", self._rel(path), problem.message))

    def _still_unreadable(self, path: Path) -> bool:
        """Unreadable now, and untouched for the grace period (a person may be saving it).

        ctime counts too: a rename (a task changing state) keeps the mtime of old content.
        """
        try:
            st = path.lstat()
        except FileNotFoundError:
            return False
        if self.now - max(st.st_mtime, st.st_ctime) < self.grace:
            return False
        try:
            self.store.get(path.stem)
        except StigmergyError:
            return True
        return False  # rewritten into a valid task since the scan

    def _clean(self) -> None:
        for path, why in self._litter():
            if not self.dry_run:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        path.unlink()
            self._do(Action("cleaned", self._rel(path), why))

    def _litter(self) -> Iterator[tuple[Path, str]]:
        """Half-built stages, old tombstones and temp files that crashes left behind."""
        for entry in _entries(self.layout.locks):
            age = self.now - _ctime(entry)
            if entry.name.startswith(".stage-") and age > self.grace:
                if not is_locked(Path(entry.path) / locks.OS_LOCK_FILE):
                    yield Path(entry.path), "claim abandoned before it was published"
            elif entry.name.startswith(".tomb-") and age > defaults.TOMBSTONE_RETENTION:
                yield Path(entry.path), "tombstone past its retention"
        directories = [
            self.layout.tasks,
            *(self.layout.state_dir(s) for s in STATES),
            self.layout.agents,
            self.layout.locks,
            self.layout.cache,
            *(i.path for i in locks.list_locks(self.layout)),
        ]
        for directory in directories:
            for entry in _entries(directory):
                is_temp = entry.name.startswith(".") and entry.name.endswith(".tmp")
                if is_temp and self.now - _ctime(entry) > self.grace:
                    yield Path(entry.path), "temporary file of an interrupted write"

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.layout.env))
        except ValueError:
            return str(path)


def _exec_lock(agent: str) -> str:
    return f"locks/.exec-{agent}.lock"


def _stopped(killed: list[int] | str) -> str:
    """What stopping an executor did: the pids killed, or why it could not."""
    if isinstance(killed, str):
        return f"could not stop its executor: {killed}"
    return f"stopped its executor's processes (pid {', '.join(map(str, killed))})"


def _ctime(entry: os.DirEntry[str]) -> float:
    """When the entry last changed; "now" (age zero) if it vanished meanwhile (renamed into
    place by its writer, or removed): then it is not litter."""
    try:
        return entry.stat(follow_symlinks=False).st_ctime
    except FileNotFoundError:
        return float("inf")


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []


def sweep(store: TaskStore, cfg: Config, now: float, *, dry_run: bool = False) -> SweepReport:
    """Run one sweep pass (see the module docstring), waiting for a merge in progress."""
    report = Sweeper(store, cfg, now, dry_run=dry_run).run()
    assert report is not None  # waiting runs always report
    return report


def sweep_if_idle(store: TaskStore, cfg: Config, now: float) -> SweepReport | None:
    """Sweep unless the integration lock is busy (then None): for agents, in passing. Only
    live work is checked for unreadable files: reading every finished task under the lock
    would cost an agent time and memory that grow with the pool's history."""
    return Sweeper(store, cfg, now, dry_run=False, history=False).run(wait=False)
