"""100 independent tasks, 20 agents, a dispatcher that sleeps 2 s: our Python API against the
`stigmergy-scheduler` package from PyPI, side by side in one run.

Ours: `stigmergy_cli.api.Scheduler(env, agents=20, tick_interval=0.05)` in this interpreter, on
a temporary git repository after `stigmergy init`; the 100 tasks go in with one `add_tasks`.
Any agent takes any task (the pool is shared); claim_best and complete are timed from inside
the run, since they run on the event loop and every agent waits while one of them runs.

Theirs: `stigmergy-scheduler==0.2.0` installed with pip into a virtual environment of its own
under a temporary directory (it is no dependency of the project), run as a subprocess from a
small script written next to it. Its scheduler binds each task to an agent (`TaskSpec.agent_id`)
and runs at most one task per agent at a time, so the 20 agents are `agent-{i % 20}`: five
tasks each. It is run twice: with its default tick interval (read from its signature), and with
0.1 s, for fairness, since it dispatches only on a tick. wake_threshold=0.4 as in its README;
every task has its default priority 0.5, above that threshold from the start. After each of its
ticks the script notes the lowest pressure of a task still waiting, and how often an agent was
left idle with tasks waiting, none of them at the threshold: its `decay()` multiplies each
stored intensity by 0.5^(age / half-life) on every tick, the age counted from the deposit, so
the fade compounds with the number of ticks and a shorter tick makes waiting tasks fall under
the threshold sooner.

Both dispatchers record when each call starts and ends; makespan is the wall time of `run()`.
Speed-up is 100 x 2 s (the sequential time) over the makespan; efficiency is that over the
ideal 20x. With --quick the dispatcher sleeps 0.5 s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from _common import (
    bench_env,
    count,
    header,
    main_guard,
    millis,
    of_floor,
    parse_args,
    run,
    scratch_dir,
    secs,
    temp_repo,
)

from stigmergy_cli import api, claims

TASKS = 100
AGENTS = 20
OUR_TICK = 0.05
THEIR_FAIR_TICK = 0.1
BAR_SPEEDUP = 19.0  # at least, for ours
PACKAGE = "stigmergy-scheduler==0.2.0"

Record = tuple[str, str, float, float]  # agent, task, start, end: seconds from run()'s start

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome:
    label: str
    makespan: float
    added: float  # seconds to queue the tasks, before run()
    records: list[Record]
    extra: str  # facts about this side's run, one line


def times_x(value: float) -> str:
    return f"{value:.1f}x"


def clocked(fn: Callable[P, R], into: list[float]) -> Callable[P, R]:
    """`fn`, appending the wall time of each call (returned or raised) to `into`."""

    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            into.append(time.perf_counter() - start)

    return wrapper


# -- our side -----------------------------------------------------------------------------------


async def our_run(repo: Path, delay: float) -> Outcome:
    env = api.open_environment(repo)
    scheduler = api.Scheduler(env, agents=AGENTS, tick_interval=OUR_TICK)
    records: list[Record] = []
    origin = 0.0

    async def dispatch(agent_id: str, task: api.TaskSpec) -> api.DispatchResult:
        start = time.perf_counter()
        await asyncio.sleep(delay)
        records.append((agent_id, task.id, start - origin, time.perf_counter() - origin))
        return api.DispatchResult(success=True)

    scheduler.set_dispatcher(dispatch)
    start = time.perf_counter()
    await scheduler.add_tasks(
        [api.TaskSpec(id=f"t{i}", description=f"Independent task {i}") for i in range(TASKS)]
    )
    added = time.perf_counter() - start
    claim_times: list[float] = []
    complete_times: list[float] = []
    real_claim, real_complete = claims.claim_best, claims.complete
    claims.claim_best = clocked(real_claim, claim_times)
    claims.complete = clocked(real_complete, complete_times)
    try:
        origin = time.perf_counter()
        metrics = await scheduler.run()
        makespan = time.perf_counter() - origin
    finally:
        claims.claim_best, claims.complete = real_claim, real_complete
    done = sum(1 for p in env.layout.state_dir("done").iterdir() if p.suffix == ".yaml")
    extra = (
        f"event loop blocked {secs(sum(claim_times))} in {count(len(claim_times))} claim_best "
        f"calls (median {millis(statistics.median(claim_times))}) and "
        f"{secs(sum(complete_times))} in {count(len(complete_times))} complete calls (median "
        f"{millis(statistics.median(complete_times))}), while dispatchers sleeping meanwhile "
        f"wake late (their overrun); {metrics.total_completions} completions, "
        f"{metrics.total_failures} failures, {done} tasks in done/"
    )
    return Outcome(f"ours (api.Scheduler, tick {OUR_TICK:g} s)", makespan, added, records, extra)


# -- their side ---------------------------------------------------------------------------------

THEIR_SCRIPT = textwrap.dedent(
    """\
    import asyncio, inspect, json, sys, time

    import stigmergy
    from stigmergy import DispatchResult, StigmergyScheduler, TaskSpec

    delay, tick_arg, n, agents = float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    default_tick = inspect.signature(StigmergyScheduler).parameters["tick_interval"].default


    async def main():
        kwargs = {} if tick_arg == "default" else {"tick_interval": float(tick_arg)}
        scheduler = StigmergyScheduler(wake_threshold=0.4, **kwargs)
        records = []
        origin = [0.0]

        running = set()

        async def dispatch(agent_id, task):
            start = time.perf_counter()
            running.add(task.id)
            await asyncio.sleep(delay)
            running.discard(task.id)
            records.append([agent_id, task.id, start - origin[0], time.perf_counter() - origin[0]])
            return DispatchResult(success=True)

        scheduler.set_dispatcher(dispatch)
        # After each tick: the lowest pressure of a task still waiting (not done, not running),
        # and how often an agent was left idle with tasks waiting, all under wake_threshold.
        stalls = [0, None]
        real_tick = scheduler.tick

        async def tick():
            await real_tick()
            done = set(scheduler.get_metrics().completed_tasks)
            best = {}
            for task in scheduler._tasks.values():
                if task.id in done or task.id in running:
                    continue
                p = await scheduler.field.read_pressure(agent_id=task.agent_id, region=task.id)
                stalls[1] = p if stalls[1] is None else min(stalls[1], p)
                if task.agent_id not in scheduler._running:
                    best[task.agent_id] = max(best.get(task.agent_id, p), p)
            stalls[0] += sum(1 for p in best.values() if p < 0.4)

        scheduler.tick = tick
        start = time.perf_counter()
        for i in range(n):
            await scheduler.add_task(
                TaskSpec(
                    id=f"t{i}", description=f"Independent task {i}", agent_id=f"agent-{i % agents}"
                )
            )
        added = time.perf_counter() - start
        origin[0] = time.perf_counter()
        await scheduler.run()
        makespan = time.perf_counter() - origin[0]
        m = scheduler.get_metrics()
        return {
            "version": stigmergy.__version__,
            "tick": scheduler._tick_interval,
            "default_tick": default_tick,
            "makespan": makespan,
            "added": added,
            "records": records,
            "ticks": m.total_ticks,
            "completions": m.total_completions,
            "failures": m.total_failures,
            "stalled": stalls[0],
            "lowest": stalls[1],
        }


    print(json.dumps(asyncio.run(main())))
    """
)


def _last_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr or proc.stdout or "").strip().splitlines() if line]
    errors = [line for line in lines if "ERROR" in line or "Error" in line]
    return (errors or lines or [f"exit status {proc.returncode}"])[-1].strip()


def install_theirs(where: Path) -> tuple[Path | None, str]:
    """A venv under `where` with the package installed: (its python or None, what happened)."""
    venv = where / "venv"
    python = venv / "bin" / "python"
    steps: list[tuple[str, list[str]]] = [
        ("python -m venv", [sys.executable, "-m", "venv", str(venv)]),
        (
            f"pip install {PACKAGE}",
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", PACKAGE],
        ),
        ("import stigmergy", [str(python), "-c", "import stigmergy"]),
    ]
    start = time.perf_counter()
    for what, argv in steps:
        try:
            proc = subprocess.run(
                argv,
                cwd=where,
                env=bench_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"{what} failed: {exc}"
        if proc.returncode != 0:
            return None, f"{what} failed: {_last_error(proc)}"
    took = time.perf_counter() - start
    return python, f"{PACKAGE} installed with pip into a venv of its own in {secs(took)}"


def their_run(python: Path, where: Path, delay: float, tick: float | None) -> Outcome:
    script = where / "their_side.py"
    script.write_text(THEIR_SCRIPT)
    argv: list[str | Path] = [python, script, str(delay), "default" if tick is None else str(tick)]
    done = run([*argv, str(TASKS), str(AGENTS)], where, capture=True)
    doc = json.loads(done.stdout)
    records: list[Record] = [(str(a), str(t), float(s), float(e)) for a, t, s, e in doc["records"]]
    which = f"default tick {doc['tick']:g} s" if tick is None else f"tick {doc['tick']:g} s"
    lowest = "none" if doc["lowest"] is None else f"{doc['lowest']:.2f}"
    extra = (
        f"{count(doc['ticks'])} ticks, {doc['completions']} completions, {doc['failures']} "
        f"failures; {count(doc['stalled'])} times after a tick an idle agent had tasks waiting "
        f"but none at wake_threshold 0.4; lowest pressure of a waiting task {lowest}; "
        f"whole subprocess {secs(done.seconds)} (start-up, add_task, run)"
    )
    return Outcome(
        f"stigmergy-scheduler {doc['version']} ({which})",
        float(doc["makespan"]),
        float(doc["added"]),
        records,
        extra,
    )


# -- the report -----------------------------------------------------------------------------


def speedup(outcome: Outcome, delay: float) -> float:
    return TASKS * delay / outcome.makespan


def peak_concurrency(records: list[Record]) -> int:
    edges = sorted([(s, 1) for _, _, s, _ in records] + [(e, -1) for _, _, _, e in records])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def report(outcome: Outcome, delay: float, *, bar: bool) -> None:
    recs = outcome.records
    sequential = TASKS * delay
    speed = speedup(outcome, delay)
    ideal = math.ceil(TASKS / AGENTS) * delay
    floor = f" {of_floor(speed, BAR_SPEEDUP, times_x)}" if bar else ""
    print(
        f"{outcome.label}: makespan {secs(outcome.makespan)} (ideal {secs(ideal)}, "
        f"+{millis(outcome.makespan - ideal)}); speed-up {speed:.1f}x over sequential "
        f"({TASKS} x {delay:g} s = {sequential:g} s){floor}; efficiency "
        f"{speed / AGENTS:.0%} of the ideal {AGENTS}x"
    )
    by_agent: dict[str, list[Record]] = {}
    for rec in sorted(recs, key=lambda r: r[2]):
        by_agent.setdefault(rec[0], []).append(rec)
    firsts = [runs[0][2] for runs in by_agent.values()]
    gaps = [b[2] - a[3] for runs in by_agent.values() for a, b in itertools.pairwise(runs)]
    overrun = [e - s - delay for _, _, s, e in recs]
    per_agent = sorted(len(r) for r in by_agent.values())
    once = len(recs) == TASKS and len({t for _, t, _, _ in recs}) == TASKS
    # The agent whose last task ended last: the makespan is its wait for a first task, its
    # tasks (sleep plus overrun), the gaps between them, and the tail after its last one.
    critical = max(by_agent.values(), key=lambda runs: runs[-1][3])
    tail = outcome.makespan - critical[-1][3]
    crit_gaps = sum(b[2] - a[3] for a, b in itertools.pairwise(critical))
    crit_over = sum(e - s - delay for _, _, s, e in critical)
    print(
        f"   where the time goes: critical agent {critical[0][0]} ({len(critical)} tasks): "
        f"{millis(critical[0][2])} before its first task, {millis(crit_gaps)} in "
        f"{len(critical) - 1} gaps between tasks, sleeps overran by {millis(crit_over)}, "
        f"run() returned {millis(tail)} after its last task ended"
    )
    print(
        f"   all {len(by_agent)} agents busy by {millis(max(firsts))}; an agent's gap between "
        f"tasks median {millis(statistics.median(gaps) if gaps else 0.0)}, max "
        f"{millis(max(gaps, default=0.0))}; sleep overrun median "
        f"{millis(statistics.median(overrun))}; tasks per agent {per_agent[0]}-{per_agent[-1]}; "
        f"peak concurrency {peak_concurrency(recs)}; every task run exactly once: "
        f"{'yes' if once else 'no'}; queuing the tasks took {millis(outcome.added)}"
    )
    print(f"   {outcome.extra}")


def theirs_section(delay: float) -> list[Outcome]:
    with scratch_dir("theirs") as tmp:
        where = tmp
        python, how = install_theirs(where)
        print(f"   {how}")
        if python is None:
            print("   reporting only our side")
            return []
        return [their_run(python, where, delay, tick) for tick in (None, THEIR_FAIR_TICK)]


def body() -> None:
    args = parse_args(__doc__ or "")
    quick: bool = args.quick
    delay = 0.5 if quick else 2.0
    header(
        f"scheduler: {TASKS} independent tasks, {AGENTS} agents, a {delay:g} s dispatcher", quick
    )
    print(
        f"   for scale: the {BAR_SPEEDUP:g}x bar is for ours; stigmergy-scheduler's 7.9x on "
        "this shape is the figure quoted for it\n"
    )
    with temp_repo("scheduler") as repo:
        ours = asyncio.run(our_run(repo, delay))
    theirs = theirs_section(delay)
    report(ours, delay, bar=True)
    for outcome in theirs:
        report(outcome, delay, bar=False)
    for outcome in theirs:
        ratio = outcome.makespan / ours.makespan
        print(
            f"ratio: {outcome.label} makespan / ours = {ratio:.2f}x "
            f"({'ours' if ratio > 1 else 'theirs'} finishes first; speed-up "
            f"{speedup(outcome, delay):.1f}x against our {speedup(ours, delay):.1f}x)"
        )


if __name__ == "__main__":
    main_guard(body)
