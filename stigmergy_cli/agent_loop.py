"""The agent: claim the best task, work in its own worktree, verify, commit, merge, repeat.

No orchestrator: each agent process runs this loop against the shared environment. It
heartbeats from a background thread, sweeps stale claims in passing, waits for the pool to
change when there is nothing to do, and stops cleanly on the first Ctrl-C (the task goes back
without an attempt counted) and at once on the second.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stigmergy_cli import (
    backends,
    backoff,
    events,
    executor,
    gitfiles,
    gitops,
    heartbeats,
    merge,
    orphans,
    results,
    templates,
    triage,
    worktrees,
    yamlio,
)
from stigmergy_cli.backends import Work
from stigmergy_cli.claims import NothingClaimable
from stigmergy_cli.environment import Environment
from stigmergy_cli.errors import StigmergyError
from stigmergy_cli.executor import ExecResult
from stigmergy_cli.heartbeats import Heartbeat, Heartbeater
from stigmergy_cli.locks import NotOwner
from stigmergy_cli.oslock import FileLock, LockTimeout
from stigmergy_cli.procinfo import start_time
from stigmergy_cli.tasks import Task

_UNREACHABLE_MAX = 60.0  # seconds: the longest wait before trying an unreachable pool again
_TROUBLE_MAX = 60.0  # seconds: the same after tasks failing for the agent's own trouble
_INSTANCE_WAIT = 3.0  # seconds to wait for the id's instance lock (a sweep may hold it briefly)


NO_CHANGE = "no change"  # the reason of an attempt whose executor exited 0 and changed nothing


class AgentStopped(StigmergyError):
    """The agent cannot work (it is misconfigured, or the machine is in trouble): the task it
    held went back with nothing counted, and the message says what to fix."""


@dataclass(frozen=True)
class AgentOptions:
    agent: str
    command: str | None = None  # --exec; a task's own `command` wins, config's is the default
    role: str | None = None
    once: bool = False
    max_tasks: int | None = None
    idle_exit: float | None = None  # seconds with nothing to do before exiting
    wake_threshold: float | None = None  # overrides agent.wake_threshold


@dataclass
class Summary:
    """What an agent did in one run."""

    done: int = 0
    failed: int = 0
    conflicts: int = 0
    deferred: int = 0
    given_back: int = 0
    fenced: int = 0
    outcomes: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the agent stopped on its own (AgentStopped)

    @property
    def attempted(self) -> int:
        return self.done + self.failed + self.conflicts + self.deferred + self.fenced


def _noop(_line: str) -> None:
    pass


class Agent:
    """One agent process's loop over the pool."""

    def __init__(
        self,
        env: Environment,
        options: AgentOptions,
        *,
        say: Callable[[str], None] = _noop,
        on_output: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.env = env
        self.layout = env.layout
        self.cfg = env.config
        self.store = env.store
        self.options = options
        self.say = say
        self.on_output = on_output
        self.clock = clock
        self.stop = threading.Event()
        self.summary = Summary()
        self.backend = backends.for_environment(env, clock)
        self._current: Work | None = None
        self._heart: Heartbeater | None = None
        self._next_sweep = 0.0
        self._backoff = 0.0
        self._watching = False  # idle and said so in the heartbeat
        self._limited_streak = 0  # rate limits in a row: each doubles the wait
        self._unreachable = 0  # failed claims in a row (the pool unreachable): same idea
        # Tasks in a row that failed on the agent's own trouble (a full disk, a broken
        # worktree), not their executor's: same idea, so they do not use up every attempt.
        self._trouble = 0
        # Whether the worktree's HEAD is known to be kept already (see results.prepare): not
        # at start, since a previous run may have left anything there.
        self._head_kept = False
        # The circuit breaker: (task, finished_at) of the failures in a row, on different
        # tasks, that each came within cfg.quick_failure seconds of their start.
        self._quick: list[tuple[str, float]] = []
        self._started = 0.0  # time.monotonic() when the current task was claimed

    # -- control ---------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Finish the current step, stop the executor, give the task back, then exit."""
        self.stop.set()

    @property
    def command(self) -> str | None:
        return self.options.command or self.cfg.agent_command

    def _should_stop(self) -> bool:
        """Stop the executor: asked to, or our heartbeat lapsed and the claim may be gone."""
        return self.stop.is_set() or self._lost()

    def _lost(self) -> bool:
        if self._heart is not None and self._heart.lost:
            return True
        return self._current is not None and self.backend.lost(self._current)

    def can_take(self, task: Task) -> bool:
        """Only tasks this agent can execute: its own command, or one the task brings."""
        return bool(task.command or self.command)

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> Summary:
        """Work until there is nothing left (with --once / --idle-exit), a limit, or a stop."""
        agent = self.options.agent
        # One process per agent id: two would share one worktree and undo each other's work.
        instance = FileLock(self.layout.agent_lock(agent))
        try:
            instance.acquire(timeout=_INSTANCE_WAIT)
        except LockTimeout:
            raise StigmergyError(
                f"agent {agent!r} is already running on this machine "
                f"(another `stigmergy agent run --id {agent}`)"
            ) from None
        try:
            return self._run()
        finally:
            instance.release()

    def _run(self) -> Summary:
        agent = self.options.agent
        self._stop_orphans(heartbeats.read(self.layout, agent))
        heart = Heartbeater(
            self.layout,
            Heartbeat.new(agent, role=self.options.role, now=self.clock()),
            interval=self.cfg.heartbeat_interval,
            lease=self.cfg.lease,
        )
        self._heart = heart
        heart.start()
        events.append(
            self.layout.events,
            events.AGENT_STARTED,
            self.clock(),
            agent=agent,
            role=self.options.role,
        )
        try:
            self._open_workspace()
            self._loop()
        except AgentStopped as exc:
            self.summary.stopped = str(exc)
            raise
        finally:
            heart.stop()
            self.backend.shutdown()
            events.append(
                self.layout.events,
                events.AGENT_STOPPED,
                self.clock(),
                agent=agent,
                done=self.summary.done,
                failed=self.summary.failed,
                reason=self.summary.stopped,
            )
        return self.summary

    def _stop_orphans(self, previous: Heartbeat | None = None) -> None:
        """Stop what an earlier executor of this agent left running in its worktree: one of
        an earlier run of this agent (killed with `kill -9`, say), or one that escaped its
        process group. Nothing may work there while the worktree is reset or committed."""
        session = orphans.session_in(previous)
        if session is None and not orphans.busy(self.layout, self.options.agent):
            return
        try:
            killed = orphans.stop(self.layout, self.options.agent, session)
        except orphans.WorktreeBusy as exc:
            raise AgentStopped(str(exc)) from None
        if killed:
            pids = ", ".join(map(str, killed))
            self.say(f"stopped {len(killed)} process(es) of an earlier executor (pid {pids})")

    def _loop(self) -> None:
        idle_since: float | None = None
        threshold = self.options.wake_threshold
        if threshold is None:
            threshold = self.cfg.wake_threshold
        while not self.stop.is_set():
            if (
                self.options.max_tasks is not None
                and self.summary.attempted >= self.options.max_tasks
            ):
                return
            self._sweep_in_passing()
            if self._backoff and self._wait(self._backoff):
                return
            self._backoff = 0.0
            try:
                claimed = self._claim(threshold or None, after_idle=idle_since is not None)
            except NothingClaimable as exc:
                if self.options.once:
                    self.say(str(exc))
                    return
                now = time.monotonic()
                idle_since = idle_since or now
                if (
                    self.options.idle_exit is not None
                    and now - idle_since >= self.options.idle_exit
                ):
                    self.say(f"idle for {now - idle_since:.0f}s; exiting")
                    return
                self._wait_for_change(idle_since)
                continue
            except StigmergyError as exc:  # the pool is unreachable for now (a remote's network)
                if self.options.once:
                    raise
                self._unreachable += 1
                self._backoff = backoff.delay(self._unreachable, 1.0, _UNREACHABLE_MAX)
                self.say(f"cannot claim: {exc}; trying again in {self._backoff:.0f}s")
                continue
            self._unreachable = 0
            idle_since = None
            self._watching = False
            self._work(claimed)
            if self.options.once:
                return

    def _claim(self, threshold: float | None, *, after_idle: bool) -> Work:
        """The best task this agent can take. After a quick failure, another task than the
        ones that just failed, if there is one: a broken executor then fails different
        tasks, which trips the breaker, and a broken task goes to another agent first."""
        just_failed = {t for t, _ in self._quick}

        def claim(can_take: Callable[[Task], bool]) -> Work:
            return self.backend.claim(
                self.options.agent,
                self.options.role,
                self.clock(),
                can_take,
                threshold,
                after_idle=after_idle,
            )

        if just_failed:
            with contextlib.suppress(NothingClaimable):
                return claim(lambda task: task.id not in just_failed and self.can_take(task))
        return claim(self.can_take)

    def _open_workspace(self) -> None:
        """Create the worktree now, off the first task's critical path: agents started
        together would otherwise queue on git's worktree lock just as work arrives."""
        # Every task ends by writing YAML and a merge commit: importing PyYAML and hashlib at
        # the first one would cost every agent 20-30 ms of CPU just as the work arrives, all
        # at once.
        yamlio.preload()
        gitfiles.preload()
        try:
            worktree = worktrees.ensure(self.layout, self.options.agent, self.cfg.target)
            for lock in worktrees.clear_abandoned_locks(self.layout, self.options.agent):
                self.say(f"removed {lock}, left by a git command killed with this agent")
            # Asked now, the first task needs no `git status` (nor a reset, while the target
            # stays put): when work arrives every idle agent starts at once.
            self._head_kept = results.clean_at_tip(self.layout, worktree, self.backend.target_ref())
            gitops.learn_identities(worktree, self.layout.root)
        except worktrees.WorkspaceError as exc:  # no task can start: say what to fix
            raise AgentStopped(str(exc)) from None
        except StigmergyError as exc:  # the first task tries again and reports it there
            self.say(f"workspace not ready: {exc}")

    def _wait(self, seconds: float) -> bool:
        """Sleep, waking early on a stop; True if stopped."""
        return self.stop.wait(seconds)

    def _wait_for_change(self, idle_since: float) -> None:
        """Idle cheaply until the pool changes, a sweep is due, or --idle-exit runs out: woken
        by the kernel (inotify) on a local pool, else two stat calls per look; a fetch every
        few seconds from a git remote."""
        before = self.backend.signature()
        # Said once on going idle, not on every wake-up: idle agents wake on each task another
        # agent finishes, and the background beat keeps the lease meanwhile.
        if self._heart is not None and not self._watching:
            self._heart.beat(status="idle", task=None)
            self._watching = True
        while not self.stop.is_set():
            changed = self.backend.wait(self.backend.poll_interval, self.stop)
            if changed and (self.stop.is_set() or self.backend.signature() != before):
                return
            if self.cfg.sweep_interval and time.monotonic() >= self._next_sweep:
                return
            idle_exit = self.options.idle_exit
            if idle_exit is not None and time.monotonic() - idle_since >= idle_exit:
                return

    def _sweep_in_passing(self) -> None:
        if not self.cfg.sweep_interval or time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self.cfg.sweep_interval
        try:
            done = self.backend.sweep(self.clock())
        except StigmergyError as exc:
            self.say(f"sweep failed: {exc}")
            return
        for line in done:
            self.say(f"swept {line}")

    # -- one task --------------------------------------------------------------------------

    def _work(self, claimed: Work) -> None:
        task = claimed.task
        heart = self._heart
        assert heart is not None
        heart.reset()
        heart.beat(task=task.id, status="working")
        self.say(f"claimed {task.id}: {task.title}")
        self._current = claimed
        self._started = time.monotonic()
        try:
            outcome = self._attempt(claimed)
            self._trouble = 0
        except AgentStopped:
            raise
        except (StigmergyError, OSError) as exc:  # one task's trouble must not stop the agent
            trouble = _machine_trouble(exc)
            if trouble is not None:  # ...unless it is the machine's: then no task can work
                self._stop_agent(claimed, trouble)
            outcome = self._fail(claimed, f"{type(exc).__name__}: {exc}")
            self._trouble += 1
            self._backoff = max(self._backoff, backoff.delay(self._trouble, 1.0, _TROUBLE_MAX))
            self.say(f"waiting {self._backoff:.0f}s before the next task")
        finally:
            self._current = None
            self.backend.close(claimed)
            # Written with the next claim, or on going idle: between two tasks, a third write
            # per task would only be replaced a moment later.
            heart.note(task=None, status="idle", done=self.summary.done, failed=self.summary.failed)
        self.summary.outcomes.append(f"{task.id}: {outcome}")

    def _attempt(self, claimed: Work) -> str:
        task = claimed.task
        attempt = task.attempts + 1
        log_path = self.layout.task_log(task.id, attempt)
        started = self.clock()
        if orphans.busy(self.layout, self.options.agent):  # never reset under a live process
            self._stop_orphans()
        worktree, base = results.prepare_at(
            self.layout,
            self.cfg,
            self.options.agent,
            task,
            started,
            head_kept=self._head_kept,
            target_ref=self.backend.target_ref(),
        )
        self._head_kept = False  # the executor is about to change it
        events.append(
            self.layout.events,
            events.STARTED,
            started,
            task=task.id,
            agent=self.options.agent,
            attempt=attempt,
        )
        command = task.command or self.command
        assert command is not None  # can_take guarantees one
        timeout = task.timeout if task.timeout is not None else self.cfg.task_timeout
        task_env = executor.environment(self._task_env(claimed, worktree, attempt))
        run = self._execute(command, worktree, task_env, log_path, timeout)
        if self._lost():
            return self._fenced(claimed, worktree)
        if run.stopped:
            return self._give_back(claimed, "interrupted")
        verdict = self._judge(run, task, task_env)
        # A run that exits 0 is judged only if it changed nothing: Aider exits 0 after its
        # provider refused it, but a CLI that did the work may well say "rate limit" in it.
        if verdict is not None and (not run.ok or gitops.is_clean(worktree)):
            return self._on_verdict(claimed, verdict)
        self._limited_streak = 0
        if not run.ok:
            why = (
                f"timed out after {timeout:g}s" if run.timed_out else f"executor exited {run.code}"
            )
            return self._fail(claimed, why, worktree)
        if task.verify:
            check = self._execute(task.verify, worktree, task_env, log_path, timeout)
            if check.stopped:
                return self._give_back(claimed, "interrupted")
            if not check.ok:
                why = "verify timed out" if check.timed_out else f"verify exited {check.code}"
                return self._fail(claimed, why, worktree)
        left = results.unresolved(worktree, task)
        if left:
            return self._fail(claimed, f"conflict markers left in {', '.join(left)}", worktree)
        if self._lost():
            return self._fenced(claimed, worktree)
        commit = results.commit(
            self.layout,
            self.cfg,
            worktree,
            task,
            self.options.agent,
            base=base,
            target_ref=self.backend.target_ref(),
        )
        self._head_kept = True  # committed (kept under refs/stigmergy/results) or unchanged
        if commit is None and not self._allows_empty(task):
            # Exit 0 and nothing to show: a coding agent that gave up says so and exits 0.
            return self._fail(claimed, NO_CHANGE, worktree)
        if self._heart is not None:
            # Shown from the next write: a merge takes milliseconds, and the background beat
            # keeps the lease meanwhile.
            self._heart.note(status="merging")
        outcome = self.backend.land(
            claimed,
            self.options.agent,
            commit,
            base,
            str(log_path.relative_to(self.layout.env)),
            self.clock(),
        )
        return self._record(task, outcome)

    def _execute(
        self,
        command: str,
        worktree: Path,
        env: dict[str, str],
        log_path: Path,
        timeout: float | None,
    ) -> ExecResult:
        """Run the executor or `verify` in the worktree, every process of it holding the
        agent's executor lock, and nothing of it left running afterwards (orphans.py)."""
        try:
            with orphans.held_for_executor(self.layout, self.options.agent) as hold:
                return executor.run(
                    command,
                    cwd=worktree,
                    env=env,
                    log_path=log_path,
                    timeout=timeout,
                    stop=self._should_stop,
                    on_line=self.on_output,
                    hold=hold,
                    on_start=self._note_executor,
                )
        finally:
            if self._heart is not None:
                self._heart.note(executor_pid=None, executor_start=None)

    def _note_executor(self, pid: int) -> None:
        """Say in the next heartbeat which session the executor runs in (orphans.py)."""
        if self._heart is not None:
            self._heart.note(executor_pid=pid, executor_start=start_time(pid))

    def _allows_empty(self, task: Task) -> bool:
        return self.cfg.allow_empty if task.allow_empty is None else task.allow_empty

    def _judge(
        self, run: ExecResult, task: Task, task_env: dict[str, str]
    ) -> triage.Verdict | None:
        return triage.judge(
            run,
            prompt=task_env["STIGMERGY_PROMPT"],
            rate_limit_codes=self.cfg.rate_limit_exit_codes,
            rate_limit_patterns=self.cfg.rate_limit_patterns,
            quick=self._quick_so_far(),
            executor_is_agents=task.command is None,
        )

    def _quick_so_far(self) -> bool:
        return time.monotonic() - self._started < self.cfg.quick_failure

    def _on_verdict(self, claimed: Work, verdict: triage.Verdict) -> str:
        """The run says nothing about its task: the provider's rate limit is waited out, a
        misconfiguration stops the agent."""
        if verdict.kind == triage.MISCONFIGURED:
            self._stop_agent(claimed, verdict.why)
        self._set_backoff()
        return self._give_back(
            claimed, f"rate-limited: {verdict.why}; waiting {self._backoff:.0f}s"
        )

    def _stop_agent(self, claimed: Work, why: str) -> None:
        """Give the task back with nothing counted, and stop: the trouble is the agent's."""
        try:
            self._give_back(claimed, "the agent stopped")
        except (StigmergyError, OSError) as exc:  # the sweep will give it back
            self.say(f"{claimed.task.id}: could not give it back: {exc}")
        raise AgentStopped(why)

    def _record(self, task: Task, outcome: merge.Outcome) -> str:
        if outcome.kind != "fenced":
            self._quick.clear()  # the executor works
        if outcome.kind == "fenced":
            self.summary.fenced += 1
            self.say(f"{task.id}: {outcome.detail}")
        elif outcome.kind == "conflict":
            self.summary.conflicts += 1
            self.say(
                f"{task.id}: conflict in {', '.join(outcome.files) or 'the merge'}; "
                f"created {outcome.conflict_task}"
            )
        elif outcome.kind == "deferred":
            self.summary.deferred += 1
            self.say(f"{task.id}: done, merge deferred ({outcome.detail})")
        else:
            self.summary.done += 1
            what = (outcome.merge_commit or "")[:10] if outcome.kind == "merged" else "no change"
            self.say(f"{task.id}: merged ({what})")
        return outcome.kind

    def _task_env(self, claimed: Work, worktree: Path, attempt: int) -> dict[str, str]:
        task = claimed.task
        verify_note = f"When you finish, this must pass: {task.verify}" if task.verify else ""
        prompt = templates.render(
            "prompt.md",
            {
                "agent": self.options.agent,
                "worktree": str(worktree),
                "task_id": task.id,
                "title": task.title,
                "description": task.description or "",
                "verify_note": verify_note,
            },
        )
        return {
            "STIGMERGY_TASK_ID": task.id,
            "STIGMERGY_TASK_FILE": str(self.backend.task_file(claimed)),
            "STIGMERGY_TASK_TITLE": task.title,
            "STIGMERGY_PROMPT": prompt,
            "STIGMERGY_AGENT": self.options.agent,
            "STIGMERGY_ROOT": str(self.layout.root),
            "STIGMERGY_WORKTREE": str(worktree),
            "STIGMERGY_ATTEMPT": str(attempt),
        }

    def _give_back(self, claimed: Work, why: str) -> str:
        task = claimed.task
        self.say(f"{task.id}: given back ({why})")
        self.summary.given_back += 1
        self.backend.give_back(claimed, self.options.agent, why, self.clock())
        return "given back"

    def _fail(self, claimed: Work, why: str, worktree: Path | None = None) -> str:
        task = claimed.task
        if worktree is not None:
            tip = gitops.rev_parse(self.layout.root, self.backend.target_ref())
            label = f"{task.id}/{task.attempts + 1}"
            kept = results.save_leftovers(self.layout, worktree, label, tip, self.clock())
            self._head_kept = True
            if kept:
                why += f"; work kept at {kept}"
        quick = self._quick_so_far()
        if quick and self._breaker_trips(task.id):
            self._trip(claimed, why, worktree)
        self.say(f"{task.id}: failed ({why})")
        self.summary.failed += 1
        finished_at = self.clock()
        try:
            self.backend.fail(claimed, self.options.agent, why, finished_at)
        except NotOwner:
            self.summary.fenced += 1
        except StigmergyError as exc:  # the task vanished or broke: report it, keep working
            self.say(f"{task.id}: could not record the failure: {exc}")
        if quick:
            self._quick.append((task.id, finished_at))
        else:
            self._quick.clear()
        return "failed"

    def _breaker_trips(self, task_id: str) -> bool:
        """Would one more quick failure, of `task_id`, make max_quick_failures in a row, on
        more than one task? (One task failing fast again and again is that task's failure.)"""
        limit = self.cfg.max_quick_failures
        tasks = {t for t, _ in self._quick} | {task_id}
        return limit > 0 and len(self._quick) + 1 >= limit and (len(tasks) > 1 or limit == 1)

    def _trip(self, claimed: Work, why: str, worktree: Path | None) -> None:
        """The circuit breaker: this task failed within seconds of starting, like the attempts
        before it, of more than one task. The executor is more likely broken than all of
        them: give this one back, take back the attempts the others were charged, stop."""
        agent = self.options.agent
        attempts = len(self._quick) + 1
        ids = list(dict.fromkeys([t for t, _ in self._quick] + [claimed.task.id]))
        note = "not counted: its agent stopped, its failures in a row looking like its own"
        latest: dict[str, tuple[float, int]] = {}
        for task_id, finished_at in self._quick:
            latest[task_id] = (finished_at, latest.get(task_id, (0.0, 0))[1] + 1)
        refunded = 0
        for task_id, (finished_at, count) in latest.items():
            try:
                if self.backend.refund(task_id, agent, finished_at, count, self.clock(), note):
                    refunded += count
            except StigmergyError as exc:
                self.say(f"{task_id}: could not take its attempts back: {exc}")
        self._quick.clear()
        where = f" in {worktree}" if worktree is not None else ""
        self._stop_agent(
            claimed,
            f"{attempts} attempts in a row ({', '.join(ids)}) failed within "
            f"{self.cfg.quick_failure:g}s of starting, the last with: {why}. The executor looks "
            f"broken rather than the tasks: run it by hand{where} to see why, then start the "
            f"agent again ({refunded + 1} of those attempts were not counted; see "
            "agent.max_quick_failures)",
        )

    def _fenced(self, claimed: Work, worktree: Path) -> str:
        """Our heartbeat lapsed: the task may be someone else's now. Keep the work; change
        nothing else."""
        task = claimed.task
        tip = gitops.rev_parse(self.layout.root, self.backend.target_ref())
        kept = results.save_leftovers(
            self.layout, worktree, f"{task.id}/lost-{task.attempts + 1}", tip, self.clock()
        )
        self.summary.fenced += 1
        self.say(
            f"{task.id}: heartbeat lapsed; not merging"
            + (f" (work kept at {kept})" if kept else "")
        )
        return "fenced"

    def _set_backoff(self) -> None:
        """Capped exponential backoff with jitter, so rate-limited agents do not return together."""
        self._limited_streak += 1
        self._backoff = backoff.delay(
            self._limited_streak, self.cfg.rate_limit_backoff, self.cfg.rate_limit_backoff_max
        )


def _machine_trouble(exc: BaseException) -> str | None:
    """What is wrong with the machine rather than the task (so that no task can work here
    now), with what to do; None when the task may be at fault."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"the disk is full ({exc.strerror}: {exc.filename}); free some space, then start again"
        )
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return f"{exc.filename} is on a read-only filesystem"
    if isinstance(
        exc,
        executor.CannotStart
        | orphans.WorktreeBusy
        | gitops.GitMissing
        | gitops.WorkingDirectoryGone
        | worktrees.WorkspaceError,
    ):
        return str(exc)
    if isinstance(exc, StigmergyError) and "No space left on device" in str(exc):
        return f"the disk is full ({exc}); free some space, then start again"
    return None
