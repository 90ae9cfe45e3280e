"""The pressure field: deterministic, with the clock and the seed passed in."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from pathlib import Path

import pytest

from stigmergy_cli import claims, config, decay, metrics, signals, tasks
from stigmergy_cli.api import (
    DispatchResult,
    ExponentialDecay,
    Field,
    LinearDecay,
    Scheduler,
    StepDecay,
    StochasticDecay,
    TaskSpec,
    open_environment,
)
from stigmergy_cli.config import Config, PressureConfig
from stigmergy_cli.errors import ConfigError, InvalidInput
from stigmergy_cli.paths import Layout
from stigmergy_cli.store import TaskStore

from .conftest import Cli

NOW = 1_800_000_000.0


@pytest.fixture
def store(env_root: Path) -> TaskStore:
    return TaskStore(Layout(env_root))


def _add(store: TaskStore, task_id: str, **fields: object) -> None:
    doc = {"id": task_id, "title": task_id, **fields}
    store.add(tasks.new_task(doc, now=NOW, created_by="t"), NOW)


@pytest.mark.parametrize(
    ("cfg", "curve"),
    [
        (PressureConfig(strategy="exponential", half_life=60), [1.0, 0.5, 0.25, 0.125, 0.0625]),
        (PressureConfig(strategy="linear", rate=0.005), [1.0, 0.7, 0.4, 0.1, 0.0]),
        (PressureConfig(strategy="step", step=0.3, step_interval=60), [1.0, 0.7, 0.4, 0.1, 0.0]),
    ],
)
def test_each_strategy_follows_its_curve(cfg: PressureConfig, curve: list[float]) -> None:
    got = [decay.decayed(1.0, minutes * 60.0, cfg) for minutes in range(5)]
    assert got == pytest.approx(curve)


def test_stochastic_decay_is_reproducible_with_a_seed() -> None:
    cfg = PressureConfig(strategy="stochastic", half_life=60, jitter=0.5, seed=42)
    first = [decay.decayed(1.0, 60, cfg, key=f"s{i}") for i in range(20)]
    assert first == [decay.decayed(1.0, 60, cfg, key=f"s{i}") for i in range(20)]
    assert len({round(v, 6) for v in first}) > 10  # jittered
    assert all(0.25 < v < 0.75 for v in first)
    other_seed = PressureConfig(strategy="stochastic", half_life=60, jitter=0.5, seed=43)
    assert first != [decay.decayed(1.0, 60, other_seed, key=f"s{i}") for i in range(20)]


def test_signals_are_validated(store: TaskStore) -> None:
    field = signals.Field(store.layout, PressureConfig())
    for bad, message in [
        (signals.Signal("Bad Kind", 0.5, "task:t", NOW), "invalid signal kind"),
        (signals.Signal("x", 1.5, "task:t", NOW), "from -1.0 to 1.0"),
        (signals.Signal("x", 0.5, "planet:mars", NOW), "invalid signal target"),
        (signals.Signal("x", 0.5, "task:", NOW), "invalid signal target"),
        (signals.Signal("x", 0.5, "task:t", NOW, meta={"big": "x" * 5000}), "metadata"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            field.deposit(bad)
    assert not store.layout.signals.exists()


def test_pressure_adds_up_and_fades_from_each_signal_time(store: TaskStore) -> None:
    cfg = PressureConfig(strategy="exponential", half_life=100)
    field = signals.Field(store.layout, cfg)
    field.deposit(signals.Signal("boost", 0.4, "task:a", NOW))
    field.deposit(signals.Signal("boost", 0.4, "task:a", NOW + 100))
    field.deposit(signals.Signal("nudge", -0.2, "agent:alpha", NOW))
    assert field.read(["task:a"], NOW + 100) == pytest.approx(0.2 + 0.4)
    assert field.pressures(NOW + 200) == pytest.approx({"task:a": 0.1 + 0.2, "agent:alpha": -0.05})


def test_evaporation_drops_only_what_faded_and_keeps_new_deposits(store: TaskStore) -> None:
    cfg = PressureConfig(strategy="exponential", half_life=10, epsilon=0.01)
    field = signals.Field(store.layout, cfg)
    field.deposit(signals.Signal("old", 1.0, "task:a", NOW))  # 2^-10 after 100 s: gone
    field.deposit(signals.Signal("new", 1.0, "task:a", NOW + 95))
    field.path.open("ab").write(b"{torn line\n")
    assert field.evaporate(NOW + 100) == (2, 1)
    assert [s.kind for s in field.all()] == ["new"]
    assert field.evaporate(NOW + 100) == (0, 1)


def test_urgent_jumps_the_queue_and_retries_rise(cli: Cli, in_repo: Path) -> None:
    for n in range(3):
        cli("task", "add", f"Routine {n}", "--id", f"r{n}", "--priority", "high")
    cli("task", "add", "Fire", "--id", "fire", "--priority", "low", "--urgent")
    cli("task", "add", "Flaky", "--id", "flaky", "--priority", "high")
    listed = json.loads(cli("task", "list", "--json").out)
    assert listed[0]["id"] == "fire"
    cli("task", "claim", "flaky", "--agent", "a")
    cli("task", "fail", "flaky", "--agent", "a", "--reason", "red")
    listed = [
        t["id"] for t in json.loads(cli("task", "list", "--json").out) if t["status"] == "pending"
    ]
    assert listed.index("flaky") < listed.index("r0")  # retry pressure: ahead of equal peers


def test_skips_raise_a_starved_task_above_a_fresher_one(store: TaskStore) -> None:
    cfg = Config()
    _add(store, "starved")
    _add(store, "fresh")
    for n in range(3):  # three agents look at it and pass
        claimed = claims.claim_named(store, cfg, f"a{n}", "starved", role=None, now=NOW + n)
        claims.release(store, cfg, f"a{n}", "starved", token=claimed.token, now=NOW + n)
        claimed.claim.close()
    assert store.get("starved").task.skip_count == 3
    best = claims.claim_best(store, cfg, "b", role=None, now=NOW + 10)
    assert best.record.task.id == "starved"
    best.claim.close()


def test_a_completed_dependency_presses_on_its_dependants(store: TaskStore) -> None:
    cfg = Config()
    _add(store, "base")
    _add(store, "next", depends_on=["base"])
    claimed = claims.claim_named(store, cfg, "a", "base", role=None, now=NOW)
    claims.complete(store, cfg, "a", "base", token=claimed.token, now=NOW)
    claimed.claim.close()
    field = signals.Field(store.layout, cfg.pressure)
    assert field.read(["task:next"], NOW) == pytest.approx(cfg.pressure.signal_dependency_done)


def test_the_wake_threshold_keeps_an_agent_idle_until_pressure_builds(store: TaskStore) -> None:
    cfg = Config()
    _add(store, "low", priority=20)
    with pytest.raises(claims.NothingClaimable, match="1 below threshold"):
        claims.claim_best(store, cfg, "a", role="dev", now=NOW, wake_threshold=0.5)
    field = signals.Field(store.layout, cfg.pressure)
    field.deposit(signals.Signal("wake", 0.4, "role:dev", NOW))  # a nudge to every dev agent
    claimed = claims.claim_best(store, cfg, "a", role="dev", now=NOW, wake_threshold=0.5)
    assert claimed.record.task.id == "low"
    claimed.claim.close()


def test_signal_commands(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "T", "--id", "t")
    assert (
        cli("signal", "deposit", "stuck", "--task", "t", "-i", "0.3", "--meta", "why=flaky").code
        == 0
    )
    assert cli("signal", "deposit", "review", "--role", "writer", "-i", "-0.2").code == 0
    listed = json.loads(cli("signal", "list", "--json").out)
    assert [(s["kind"], s["target"]) for s in listed] == [
        ("stuck", "task:t"),
        ("review", "role:writer"),
    ]
    assert listed[0]["meta"] == {"why": "flaky"}
    assert float(cli("signal", "read", "--task", "t").out) == pytest.approx(0.3, abs=1e-3)
    assert json.loads(cli("signal", "read", "--role", "writer", "--json").out)[
        "pressure"
    ] == pytest.approx(-0.2, abs=1e-3)
    assert json.loads(cli("decay", "--json").out) == {"evaporated": 0, "kept": 2}
    for args, message in [
        (["signal", "deposit", "x", "--task", "t", "--agent", "a"], "exactly one target"),
        (["signal", "deposit", "x", "--task", "ghost"], "no task with id 'ghost'"),
        (["signal", "deposit", "x", "--task", "t", "-i", "2"], "from -1.0 to 1.0"),
        (["signal", "deposit", "X Y", "--task", "t"], "invalid signal kind"),
        (["signal", "deposit", "x", "--task", "t", "--meta", "novalue"], "KEY=VALUE"),
        (["signal", "read"], "exactly one target"),
    ]:
        result = cli(*args)
        assert result.code in (1, 2), args
        assert message in result.err
    assert len(json.loads(cli("signal", "list", "--json").out)) == 2


def test_a_bad_strategy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'pressure\.strategy' must be one of"):
        config.parse({"pressure": {"strategy": "quadratic"}}, "c")
    with pytest.raises(ConfigError, match=r"'pressure\.half_life' must be greater than 0"):
        config.parse({"pressure": {"half_life": 0}}, "c")


def test_stats_are_read_from_the_event_log(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "A", "--id", "a")
    cli("task", "add", "B", "--id", "b")
    cli("task", "claim", "a", "--agent", "x")
    cli("task", "fail", "a", "--agent", "x")
    doc = json.loads(cli("stats", "--json").out)
    assert (doc["added"], doc["failures"], doc["retries"]) == (2, 1, 1)
    assert doc["agents"] == {"x": {"claimed": 1, "failed": 1}}
    assert doc["tasks"]["pending"] == 2
    assert doc["pressure"][0]["id"] == "a"
    assert "completions" in cli("stats").out


def test_stats_on_a_hundred_thousand_events(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    lines = []
    for n in range(25_000):
        base = NOW + n
        lines += [
            {"ts": base, "event": "task_added", "task": f"t{n}"},
            {"ts": base + 1, "event": "claimed", "task": f"t{n}", "agent": f"a{n % 8}"},
            {"ts": base + 2, "event": "started", "task": f"t{n}", "agent": f"a{n % 8}"},
            {"ts": base + 5, "event": "merged", "task": f"t{n}", "agent": f"a{n % 8}"},
        ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    started = time.perf_counter()
    m = metrics.collect(log)
    elapsed = time.perf_counter() - started
    assert (m.events, m.completions, m.mean_wait, m.mean_run) == (100_000, 25_000, 1.0, 3.0)
    assert sum(b["completions"] for b in m.throughput) == 25_000
    assert m.agents["a0"]["done"] == 3125
    assert elapsed < 30  # a sanity bound, not a benchmark (see benchmarks/)


# -- the Python API --------------------------------------------------------------------------


def test_the_scheduler_runs_a_pool_with_an_async_dispatcher(env_root: Path) -> None:
    env = open_environment(env_root)
    scheduler = Scheduler(env, agents=4, tick_interval=0.02)
    seen: list[tuple[str, str]] = []

    async def dispatch(agent_id: str, task: TaskSpec) -> DispatchResult:
        await asyncio.sleep(0.01)
        seen.append((agent_id, task.id))
        if task.id == "broken":
            return DispatchResult(success=False, error="cannot")
        return DispatchResult(success=True, output=task.description.upper())

    scheduler.set_dispatcher(dispatch)

    async def main() -> None:
        await scheduler.add_tasks(
            [
                TaskSpec(id="draft", description="write a draft", agent_id="writer", priority=0.8),
                TaskSpec(
                    id="review",
                    description="review it",
                    agent_id="reviewer",
                    dependencies=["draft"],
                ),
                TaskSpec(id="broken", description="never works", metadata={"ticket": 7}),
            ]
        )
        await scheduler.inject_urgent(TaskSpec(id="hotfix", description="fix prod"))
        await scheduler.run()

    asyncio.run(main())
    metrics_now = scheduler.get_metrics()
    order = [task for _, task in seen]
    assert order.index("hotfix") < order.index("draft") < order.index("review")
    assert ("writer", "draft") in seen
    assert ("reviewer", "review") in seen
    assert metrics_now.total_completions == 3
    assert metrics_now.total_failures == Config().max_attempts
    assert metrics_now.pending_tasks == 0
    assert env.store.get("broken").state == "failed"
    done = env.store.get("draft").task.result
    assert done is not None
    assert done["output"] == "WRITE A DRAFT"
    assert env.store.get("broken").task.extra["api_metadata"] == {"ticket": 7}


def test_the_field_api_and_its_strategies(env_root: Path) -> None:
    env = open_environment(env_root)

    async def main() -> None:
        for strategy in (
            ExponentialDecay(60),
            LinearDecay(0.01),
            StepDecay(0.1, 60),
            StochasticDecay(60, 0.2, 1),
        ):
            field = Field(env, strategy=strategy, evaporation_threshold=0.001)
            await field.deposit("agent-1", "work_claim", 0.8, {"task": "research"})
            assert await field.read_pressure("agent-1") > 0
        assert await field.read_pressure("agent-2") == 0
        assert await field.decay() == 0

    asyncio.run(main())


def _cli_agent(root: str) -> int:
    from stigmergy_cli.agent_loop import Agent, AgentOptions

    env = open_environment(root)
    work = 'touch "$STIGMERGY_TASK_ID"'
    return Agent(env, AgentOptions("cli-agent", command=work, idle_exit=1.0)).run().done


@pytest.mark.slow
def test_a_cli_agent_and_api_agents_share_one_pool(env_root: Path) -> None:
    env = open_environment(env_root)
    for n in range(30):
        _add(env.store, f"shared-{n:02d}")
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        cli_done = pool.apply_async(_cli_agent, (str(env_root),))
        scheduler = Scheduler(env, agents=3, tick_interval=0.02)

        async def dispatch(agent_id: str, task: TaskSpec) -> bool:
            await asyncio.sleep(0.05)
            return True

        scheduler.set_dispatcher(dispatch)
        api_done = asyncio.run(scheduler.run()).total_completions
        total_cli = cli_done.get(timeout=120)
    assert api_done + total_cli == 30
    assert {r.state for r in env.store.scan(time.time()).records} == {"done"}


def test_the_api_example_runs() -> None:
    import subprocess
    import sys

    example = Path(__file__).resolve().parents[1] / "examples" / "api_scheduler.py"
    proc = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("10 tasks done, 0 failed")
    assert proc.stdout.index("did cover") < proc.stdout.index("did edit")
