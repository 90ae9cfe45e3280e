"""The Python API: embed stigmergy instead of shelling out.

Same files, locks and protocols as the CLI, so CLI agents and API agents share one pool:

    import asyncio
    from stigmergy_cli.api import DispatchResult, Scheduler, TaskSpec, open_environment

    env = open_environment("path/to/repo")          # a repository where `stigmergy init` ran
    scheduler = Scheduler(env, agents=8, wake_threshold=0.4)

    async def dispatch(agent_id: str, task: TaskSpec) -> DispatchResult:
        return DispatchResult(success=True, output=await my_llm_call(task.description))

    scheduler.set_dispatcher(dispatch)
    asyncio.run(scheduler.add_task(TaskSpec(id="draft", description="Write a draft", priority=0.8)))
    asyncio.run(scheduler.run())                     # until the pool is empty

The names follow the `stigmergy-scheduler` package (TaskSpec, DispatchResult, set_dispatcher,
add_task, inject_urgent, run/start/stop, get_metrics, a field with deposit/read_pressure/decay
and swappable decay strategies); docs/api.md maps one onto the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stigmergy_cli import claims, defaults, signals, tasks
from stigmergy_cli.config import Config, PressureConfig
from stigmergy_cli.environment import Environment, require_local
from stigmergy_cli.environment import open_environment as _open
from stigmergy_cli.errors import StigmergyError
from stigmergy_cli.heartbeats import Heartbeat, Heartbeater
from stigmergy_cli.locks import NotOwner

__all__ = [
    "DispatchResult",
    "Environment",
    "ExponentialDecay",
    "Field",
    "LinearDecay",
    "Scheduler",
    "SchedulerMetrics",
    "StepDecay",
    "StochasticDecay",
    "TaskSpec",
    "open_environment",
]


def open_environment(path: str | os.PathLike[str] = ".") -> Environment:
    """Open the environment of the repository containing `path` (after `stigmergy init`).

    The API works on the local pool: a repository set up for the git backend is refused
    rather than served a pool that agents on other machines never see.
    """
    env = _open(Path(path), None, os.environ, time.time())
    require_local(env, "the Python API")
    return env


@dataclass
class TaskSpec:
    """A task, as the scheduler API sees it. `priority` is 0.0-1.0 (0.5 is medium);
    `agent_id` names the kind of agent it is for (stored as the task's role)."""

    id: str
    description: str
    agent_id: str | None = None
    priority: float = 0.5
    dependencies: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    title: str | None = None


@dataclass
class DispatchResult:
    """What a dispatcher returns: success, and an output or an error to record."""

    success: bool
    output: Any = None
    error: str | None = None


Dispatcher = Callable[[str, TaskSpec], Awaitable["DispatchResult | bool | None"]]


@dataclass
class SchedulerMetrics:
    total_ticks: int = 0
    total_dispatches: int = 0
    total_completions: int = 0
    total_failures: int = 0
    pending_tasks: int = 0
    completed_tasks: list[str] = field(default_factory=list)
    running_agents: list[str] = field(default_factory=list)
    agent_pressures: dict[str, float] = field(default_factory=dict)
    started_at: float | None = None
    finished_at: float | None = None


# -- decay strategies, as objects (each becomes the pressure section of the config) -------


@dataclass(frozen=True)
class ExponentialDecay:
    half_life_seconds: float = defaults.PRESSURE_HALF_LIFE

    def config(self, base: PressureConfig) -> PressureConfig:
        return dataclasses.replace(base, strategy="exponential", half_life=self.half_life_seconds)


@dataclass(frozen=True)
class LinearDecay:
    rate_per_second: float = defaults.PRESSURE_RATE

    def config(self, base: PressureConfig) -> PressureConfig:
        return dataclasses.replace(base, strategy="linear", rate=self.rate_per_second)


@dataclass(frozen=True)
class StepDecay:
    step: float = defaults.PRESSURE_STEP
    interval_seconds: float = defaults.PRESSURE_STEP_INTERVAL

    def config(self, base: PressureConfig) -> PressureConfig:
        return dataclasses.replace(
            base, strategy="step", step=self.step, step_interval=self.interval_seconds
        )


@dataclass(frozen=True)
class StochasticDecay:
    half_life_seconds: float = defaults.PRESSURE_HALF_LIFE
    jitter: float = defaults.PRESSURE_JITTER
    seed: int = defaults.PRESSURE_SEED

    def config(self, base: PressureConfig) -> PressureConfig:
        return dataclasses.replace(
            base,
            strategy="stochastic",
            half_life=self.half_life_seconds,
            jitter=self.jitter,
            seed=self.seed,
        )


DecayStrategy = ExponentialDecay | LinearDecay | StepDecay | StochasticDecay


class Field:
    """The low-level pressure field: deposit, read pressure, decay."""

    def __init__(
        self,
        env: Environment,
        strategy: DecayStrategy | None = None,
        evaporation_threshold: float | None = None,
    ) -> None:
        cfg = env.config.pressure
        if strategy is not None:
            cfg = strategy.config(cfg)
        if evaporation_threshold is not None:
            cfg = dataclasses.replace(cfg, epsilon=evaporation_threshold)
        self._field = signals.Field(env.layout, cfg)

    @staticmethod
    def _target(target: str) -> str:
        # A bare name is an agent, as in stigmergy-scheduler; "task:", "role:" are explicit.
        return target if ":" in target else f"agent:{target}"

    async def deposit(
        self,
        target: str,
        signal_type: str,
        intensity: float,
        metadata: dict[str, Any] | None = None,
        *,
        by: str | None = None,
    ) -> signals.Signal:
        """Deposit a signal on `target` ("agent-1", "task:ID" or "role:NAME")."""
        signal = signals.Signal(
            signal_type, intensity, self._target(target), time.time(), by, metadata or {}
        )
        return self._field.deposit(signal)

    async def read_pressure(self, target: str) -> float:
        """The pressure on `target` now."""
        return self._field.read([self._target(target)], time.time())

    def pressures(self) -> dict[str, float]:
        """The pressure on every target now."""
        return self._field.pressures(time.time())

    async def decay(self) -> int:
        """Evaporate what has faded below the threshold; returns how many signals went."""
        return self._field.evaporate(time.time())[0]


class Scheduler:
    """N in-process agents working the pool with an async dispatcher, until it is empty."""

    def __init__(
        self,
        env: Environment,
        *,
        agents: int = 4,
        wake_threshold: float | None = None,
        tick_interval: float = 0.1,
        name: str = "api",
        role: str | None = claims.ANY_ROLE,
        dispatch_timeout: float | None = None,
    ) -> None:
        self.env = env
        self.cfg: Config = env.config
        self.agents = agents
        self.wake_threshold = self.cfg.wake_threshold if wake_threshold is None else wake_threshold
        self.tick_interval = tick_interval
        self.name = name
        self.role = role
        self.dispatch_timeout = dispatch_timeout
        self._dispatcher: Dispatcher | None = None
        self._stop = asyncio.Event()
        self._running: set[str] = set()
        self.metrics = SchedulerMetrics()
        self.field = Field(env)

    # -- the pool ----------------------------------------------------------------------------

    def set_dispatcher(self, dispatcher: Dispatcher) -> None:
        """The async function called with (agent_id, task) for each task an agent takes."""
        self._dispatcher = dispatcher

    async def add_task(self, spec: TaskSpec) -> str:
        """Queue a task (its dependencies must exist or be added first); returns its id."""
        return self._add(spec)

    async def add_tasks(self, specs: Sequence[TaskSpec]) -> list[str]:
        """Queue many tasks at once, dependencies among them allowed: all or none."""
        now = time.time()
        batch = [tasks.new_task(self._doc(s), now=now, created_by=self.name) for s in specs]
        return [r.task.id for r in self.env.store.import_tasks(batch, now)]

    async def inject_urgent(self, spec: TaskSpec) -> str:
        """Queue a task with urgent pressure: it jumps the queue and wakes an idle agent."""
        task_id = self._add(spec)
        claims.deposit(
            self.env.store,
            self.cfg,
            signals.URGENT,
            task_id,
            self.cfg.pressure.signal_urgent,
            self.name,
            time.time(),
        )
        return task_id

    def _doc(self, spec: TaskSpec) -> dict[str, Any]:
        return {
            "id": spec.id,
            "title": spec.title or spec.description.strip().splitlines()[0][: tasks.MAX_TITLE],
            "description": spec.description,
            "priority": max(0, min(100, round(spec.priority * 100))),
            "role": spec.agent_id,
            "depends_on": list(spec.dependencies),
            **({"api_metadata": spec.metadata} if spec.metadata else {}),
        }

    def _add(self, spec: TaskSpec) -> str:
        now = time.time()
        task = tasks.new_task(self._doc(spec), now=now, created_by=self.name)
        return self.env.store.add(task, now).task.id

    # -- running -----------------------------------------------------------------------------

    async def run(self) -> SchedulerMetrics:
        """Work until no task is pending or active (or stop() is called)."""
        if self._dispatcher is None:
            raise StigmergyError(
                "set_dispatcher() first: the scheduler has nothing to run tasks with"
            )
        self._stop.clear()
        self.metrics.started_at = time.time()
        workers = [
            asyncio.create_task(self._agent(f"{self.name}-{n + 1}")) for n in range(self.agents)
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            self.metrics.finished_at = time.time()
        return self.get_metrics()

    def start(self) -> asyncio.Task[SchedulerMetrics]:
        """Run in the background of the current event loop."""
        return asyncio.get_running_loop().create_task(self.run())

    def stop(self) -> None:
        """Finish the tasks in hand, take no more."""
        self._stop.set()

    def get_metrics(self) -> SchedulerMetrics:
        """A snapshot: counts, what is running, and the pressure on each agent."""
        now = time.time()
        pending = self.env.store.scan(now, states=("pending",)).records
        pressures = self.field.pressures()
        return dataclasses.replace(
            self.metrics,
            pending_tasks=len(pending),
            completed_tasks=list(self.metrics.completed_tasks),
            running_agents=sorted(self._running),
            agent_pressures={
                k: round(v, 4) for k, v in pressures.items() if k.startswith(("agent:", "role:"))
            },
        )

    def _pool_empty(self) -> bool:
        open_tasks = self.env.store.scan(time.time(), states=("pending", "active")).records
        return not open_tasks

    async def _agent(self, agent: str) -> None:
        heart = Heartbeater(
            self.env.layout,
            Heartbeat.new(agent, role=self.role, now=time.time()),
            interval=self.cfg.heartbeat_interval,
            lease=self.cfg.lease,
        )
        heart.start()
        try:
            while not self._stop.is_set():
                self.metrics.total_ticks += 1
                try:
                    # File work runs in a thread, so other agents' sleeps end on time.
                    claimed = await asyncio.to_thread(
                        claims.claim_best,
                        self.env.store,
                        self.cfg,
                        agent,
                        role=self.role,
                        now=time.time(),
                        wake_threshold=self.wake_threshold or None,
                    )
                except claims.NothingClaimable:
                    if self._pool_empty():
                        return
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.tick_interval)
                    continue
                heart.beat(task=claimed.record.task.id, status="working")
                await self._dispatch(agent, claimed)
                heart.beat(task=None, status="idle")
        finally:
            heart.stop()

    async def _dispatch(self, agent: str, claimed: claims.Claimed) -> None:
        assert self._dispatcher is not None
        task = claimed.record.task
        spec = TaskSpec(
            id=task.id,
            description=task.description or task.title,
            agent_id=task.role or agent,
            priority=task.priority / 100,
            dependencies=list(task.depends_on),
            metadata=dict(task.extra.get("api_metadata") or {}),
            title=task.title,
        )
        self._running.add(agent)
        self.metrics.total_dispatches += 1
        try:
            outcome = await asyncio.wait_for(
                self._dispatcher(spec.agent_id or agent, spec), self.dispatch_timeout
            )
            result = (
                outcome
                if isinstance(outcome, DispatchResult)
                else DispatchResult(success=outcome is not False)
            )
        except asyncio.TimeoutError:
            result = DispatchResult(
                success=False, error=f"dispatcher timed out after {self.dispatch_timeout}s"
            )
        except Exception as exc:  # a dispatcher's bug is a failed attempt, not a dead agent
            result = DispatchResult(success=False, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._running.discard(agent)
        now = time.time()
        try:
            if result.success:
                output = None if result.output is None else str(result.output)
                await asyncio.to_thread(
                    claims.complete,
                    self.env.store,
                    self.cfg,
                    agent,
                    task.id,
                    token=claimed.token,
                    now=now,
                    output=output,
                )
                self.metrics.total_completions += 1
                self.metrics.completed_tasks.append(task.id)
            else:
                await asyncio.to_thread(
                    claims.fail,
                    self.env.store,
                    self.cfg,
                    agent,
                    task.id,
                    token=claimed.token,
                    reason=result.error,
                    now=now,
                )
                self.metrics.total_failures += 1
        except NotOwner:
            pass  # swept while we worked: the sweep has put it back already
        finally:
            claimed.claim.close()
