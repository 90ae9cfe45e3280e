"""Where an agent's tasks come from and its results go: the local `.stigmergy/` directory, or
a shared git remote. The agent loop (agent_loop.py) is the same for both; it talks to one of
these through the `Backend` protocol.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from stigmergy_cli import atomic, claims, gitops, merge, sweep
from stigmergy_cli.claims import Claimed
from stigmergy_cli.config import Config
from stigmergy_cli.dirwatch import DirWatch
from stigmergy_cli.environment import Environment
from stigmergy_cli.errors import StigmergyError
from stigmergy_cli.remote_pool import Held, RemotePool
from stigmergy_cli.tasks import Task

# Seconds between an idle agent's fetches from a git remote: 1.3 % of a core per idle agent
# at 1 s (a fetch and a for-each-ref each time), 0.6 % at 2 s, against a new task picked up
# within 2 s. A pool that stays quiet is looked at less and less often, up to REMOTE_POLL_MAX:
# hundreds of idle agents would otherwise be the server's largest load.
REMOTE_POLL = 2.0
REMOTE_POLL_MAX = 10.0
_REMOTE_POLL_GROWTH = 1.5


class Work(Protocol):
    """A claimed task, as the agent loop sees it."""

    @property
    def task(self) -> Task: ...

    @property
    def token(self) -> str: ...


class Backend(Protocol):
    poll_interval: float  # seconds between looks at the pool while idle

    def claim(
        self,
        agent: str,
        role: str | None,
        now: float,
        can_take: Callable[[Task], bool],
        wake_threshold: float | None,
        after_idle: bool = False,
    ) -> Work:
        """The best ready task for `agent`; raises claims.NothingClaimable. `after_idle`: the
        agent was idle until now (others woken by the same change may be claiming too)."""

    def give_back(self, work: Work, agent: str, why: str, now: float) -> None: ...

    def fail(self, work: Work, agent: str, why: str, now: float) -> None:
        """Count a failed attempt (its result's `finished_at` is `now`); raises
        locks.NotOwner if the claim is no longer ours."""

    def refund(
        self, task_id: str, agent: str, finished_at: float, count: int, now: float, why: str
    ) -> bool:
        """Take back the last `count` failed attempts of `agent`, the last recorded at
        `finished_at` (claims.refund); False if the task moved on since."""

    def land(
        self,
        work: Work,
        agent: str,
        result: str | None,
        base: str | None,
        log: str | None,
        now: float,
    ) -> merge.Outcome: ...

    def lost(self, work: Work) -> bool:
        """The claim may have been broken: stop and land nothing."""

    def close(self, work: Work) -> None: ...

    def sweep(self, now: float) -> list[str]:
        """Reclaim dead agents' tasks in passing; what was done, for the agent's output."""

    def signature(self) -> object:
        """Changes when the pool does (idle agents compare it)."""

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        """Sleep up to `seconds` (less if `stop` is set); False if the pool certainly did not
        change meanwhile, True if it may have."""

    def shutdown(self) -> None:
        """Let go of what the backend holds open (the agent is exiting)."""

    def target_ref(self) -> str:
        """The ref whose commit a worktree is reset to before a task."""

    def task_file(self, work: Work) -> Path:
        """The task's file, for the executor (STIGMERGY_TASK_FILE)."""


class LocalBackend:
    """Tasks and claims in this repository's `.stigmergy/` directory."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.store = env.store
        self.cfg: Config = env.config
        self.poll_interval = self.cfg.poll_interval
        # Opened now, before any signature is taken, so no change can slip between the two.
        layout = env.layout
        self._watch = DirWatch.open([layout.state_dir("pending"), layout.state_dir("done")])
        # Whether a task finishing (a file into done/) can make something claimable, as the
        # last claim found: when nothing pending waits for a dependency or for pressure, idle
        # agents need not look again each time another agent finishes (at the end of a batch
        # that is every idle agent scanning the pool for every last merge).
        self._done_matters = True

    def claim(
        self,
        agent: str,
        role: str | None,
        now: float,
        can_take: Callable[[Task], bool],
        wake_threshold: float | None,
        after_idle: bool = False,
    ) -> Claimed:
        try:
            claimed = claims.claim_best(
                self.store,
                self.cfg,
                agent,
                role=role,
                now=now,
                can_take=can_take,
                wake_threshold=wake_threshold,
                after_idle=after_idle,
            )
        except claims.NothingClaimable as exc:
            self._done_matters = exc.waiting
            raise
        self._done_matters = True
        return claimed

    def give_back(self, work: Work, agent: str, why: str, now: float) -> None:
        claims.release(
            self.store,
            self.cfg,
            agent,
            work.task.id,
            token=work.token,
            now=now,
            skip=False,
            reason=why,
        )

    def fail(self, work: Work, agent: str, why: str, now: float) -> None:
        claims.fail(
            self.store, self.cfg, agent, work.task.id, token=work.token, reason=why, now=now
        )

    def refund(
        self, task_id: str, agent: str, finished_at: float, count: int, now: float, why: str
    ) -> bool:
        return claims.refund(self.store, self.cfg, task_id, agent, finished_at, count, now, why)

    def land(
        self,
        work: Work,
        agent: str,
        result: str | None,
        base: str | None,
        log: str | None,
        now: float,
    ) -> merge.Outcome:
        assert isinstance(work, Claimed)
        return merge.integrate(
            self.store,
            self.cfg,
            task_id=work.task.id,
            agent=agent,
            token=work.token,
            result=result,
            now=now,
            log=log,
            base=base,
            dependants=work.dependants,
            task=work.task,
        )

    def lost(self, work: Work) -> bool:  # noqa: ARG002 - the protocol's signature
        return False  # the agent's heartbeat says so (Heartbeater.lost)

    def close(self, work: Work) -> None:
        assert isinstance(work, Claimed)
        work.claim.close()

    def sweep(self, now: float) -> list[str]:
        report = sweep.sweep_if_idle(self.store, self.cfg, now)
        return [f"{a.target}: {a.kind} ({a.reason})" for a in report.actions] if report else []

    def signature(self) -> object:
        # A task added, released or finished renames a file in or out of one of these.
        signature = []
        for state in ("pending", "done") if self._done_matters else ("pending",):
            try:
                signature.append(self.env.layout.state_dir(state).stat().st_mtime_ns)
            except FileNotFoundError:
                signature.append(0)
        return tuple(signature)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        # With a watch, the kernel wakes us the moment a task file moves.
        changed = not stop.wait(seconds) if self._watch is None else self._watch.wait(seconds)
        if changed:
            # Every idle agent is woken by an import's first link; looking only once it is
            # published keeps all of them from competing with it for the CPU.
            self.store.await_publishing()
        return changed

    def shutdown(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def target_ref(self) -> str:
        return f"refs/heads/{self.cfg.target}"

    def task_file(self, work: Work) -> Path:
        return self.env.layout.task_file("active", work.task.id)


class _Renewer:
    """Renews a remote claim from a background thread: a lease-checked push every quarter
    lease. A rejected renewal means the claim was broken; failing to reach the server for
    half a lease means it may have been: either way the claim counts as lost."""

    def __init__(self, pool: RemotePool, held: Held, now: Callable[[], float]) -> None:
        self.pool = pool
        self.held = held
        self.now = now
        self.interval = pool.cfg.lease / 4
        self.stop = threading.Event()
        self.lock = threading.Lock()  # a renewal and the final push never overlap
        self.thread = threading.Thread(target=self._run, name="stigmergy-renew", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        last = self.now()
        while not self.stop.wait(self.interval):
            with self.lock:
                if self.stop.is_set() or self.held.lost:
                    return
                try:
                    if not self.pool.renew(self.held, self.now()):
                        return
                    last = self.now()
                except StigmergyError:
                    if self.now() - last > self.pool.cfg.lease / 2:
                        self.held.lost = True
                        return

    def close(self) -> None:
        self.stop.set()
        with self.lock:
            pass
        self.thread.join(timeout=5)


class RemoteBackend:
    """Tasks and claims as refs on a shared git remote (remote_pool)."""

    def __init__(self, env: Environment, clock: Callable[[], float]) -> None:
        self.env = env
        self.cfg = env.config
        self.pool = RemotePool(env.layout, env.config)
        self.clock = clock
        # Each look at an idle pool is a fetch from the server: not ten times a second.
        self.poll_interval = self._first_poll = max(self.cfg.poll_interval, REMOTE_POLL)
        self._last_signature: object = None
        self._renewers: dict[str, _Renewer] = {}

    def _held(self, work: Work) -> Held:
        assert isinstance(work, Held)
        return work

    def claim(
        self,
        agent: str,
        role: str | None,
        now: float,
        can_take: Callable[[Task], bool],
        wake_threshold: float | None,
        after_idle: bool = False,  # noqa: ARG002 (a remote claim is one CAS push of a ref)
    ) -> Held:
        held = self.pool.claim_best(
            agent, role=role, now=now, can_take=can_take, wake_threshold=wake_threshold
        )
        self._renewers[held.token] = _Renewer(self.pool, held, self.clock)
        try:
            conflict = merge.conflict_of(held.task)
            if conflict is not None:  # its worktree starts with the other machine's result
                self.pool.fetch_result(conflict["task"])
            path = self.task_file(held)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(path, held.task.to_yaml().encode(), durable=False)
        except (StigmergyError, OSError) as exc:  # not ready to work on it: give it back
            with contextlib.suppress(StigmergyError):
                self.give_back(held, agent, f"could not start: {exc}", now)
            raise
        return held

    def _quiet(self, work: Work) -> Held:
        """Stop renewing: the next push names the claim commit we last pushed."""
        renewer = self._renewers.pop(work.token, None)
        if renewer is not None:
            renewer.close()
        return self._held(work)

    def give_back(self, work: Work, agent: str, why: str, now: float) -> None:
        self.pool.give_back(self._quiet(work), agent, why, now, skip=False)

    def fail(self, work: Work, agent: str, why: str, now: float) -> None:
        self.pool.fail(self._quiet(work), agent, why, now)

    def refund(
        self, task_id: str, agent: str, finished_at: float, count: int, now: float, why: str
    ) -> bool:
        return self.pool.refund(task_id, agent, finished_at, count, now, why)

    def land(
        self,
        work: Work,
        agent: str,
        result: str | None,
        base: str | None,
        log: str | None,
        now: float,
    ) -> merge.Outcome:
        return self.pool.land(self._quiet(work), agent, result, base, now, log)

    def lost(self, work: Work) -> bool:
        return self._held(work).lost

    def close(self, work: Work) -> None:
        self._quiet(work)
        self.task_file(work).unlink(missing_ok=True)

    def sweep(self, now: float) -> list[str]:
        report = self.pool.sweep(now)
        return [f"{a.task}: {a.kind} ({a.reason})" for a in report.actions]

    def signature(self) -> object:
        with contextlib.suppress(StigmergyError):  # unreachable: wait on; the claim will say
            self.pool.refresh()
        signature = gitops.run(
            ["for-each-ref", "--format=%(objectname)", self.pool.remote.cache], self.env.layout.root
        ).stdout
        if signature == self._last_signature:  # quiet: look again a little later next time
            grown = self.poll_interval * _REMOTE_POLL_GROWTH
            self.poll_interval = min(max(REMOTE_POLL_MAX, self._first_poll), grown)
        else:
            self.poll_interval = self._first_poll
        self._last_signature = signature
        return signature

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        return not stop.wait(seconds)

    def shutdown(self) -> None:
        for token in list(self._renewers):
            self._renewers.pop(token).close()

    def target_ref(self) -> str:
        return self.pool.remote.cached_target

    def task_file(self, work: Work) -> Path:
        return self.env.layout.cache / "remote-tasks" / f"{work.task.id}.yaml"


def for_environment(env: Environment, clock: Callable[[], float]) -> Backend:
    """The backend the environment's config names."""
    return RemoteBackend(env, clock) if env.config.backend == "git" else LocalBackend(env)
