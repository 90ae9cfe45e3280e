"""Claim latency: in-process, as a whole `task claim` process, and with 16 claimers racing.

In-process calls import the library and time `claims.claim_best` alone: scan pending/ (through
its list cache), rank, win a task's lock, move the task to active/. Two pools take turns call
by call: 500 pending tasks alone, and 500 pending beside 5,000 done ones (moved to done/ with
os.rename after the import), which a claim should not notice since it reads pending/ only. Each
pool shrinks from 500 to 1 as it is claimed. One more run of the same shape under cProfile
says where the time goes.

Whole-process runs time `stigmergy task claim --agent aN --json` one at a time, then 16 at
once. `task claim` also prepares the agent's git worktree (`git worktree add` for an agent id
it has not seen, a reset after that), so one at a time two kinds of call take turns: a new
agent id each time, and one fixed agent whose worktree exists (its task given back by an
untimed `task release` before each claim). The 16 at once are new agents. The contended
in-process run forks 16 processes that claim from one pool until it is empty, and checks that
every task was won exactly once.
"""

from __future__ import annotations

import cProfile
import json
import multiprocessing
import os
import pstats
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from _common import (
    CLI,
    count,
    gather,
    header,
    import_plain,
    main_guard,
    median,
    millis,
    of_bar,
    parse_args,
    percentile,
    run,
    secs,
    task_id,
    temp_repo,
)

from stigmergy_cli import claims, locks
from stigmergy_cli.config import Config
from stigmergy_cli.environment import open_environment
from stigmergy_cli.paths import Layout
from stigmergy_cli.store import TaskStore

BAR_IN_PROCESS = 0.005  # seconds per claim_best call
BAR_PROCESS = 0.150  # seconds per `task claim` process
RACERS = 16


def ms_stats(values: list[float]) -> str:
    return f"median {millis(median(values))}, p99 {millis(percentile(values, 99))}"


def open_store(repo: Path) -> tuple[TaskStore, Config]:
    env = open_environment(repo, None, {})
    return env.store, env.config


def claim_one(store: TaskStore, cfg: Config, agent: str) -> tuple[float, str]:
    """One timed claim_best call: (seconds, task id). The flock is dropped after timing."""
    start = time.perf_counter()
    claimed = claims.claim_best(store, cfg, agent, role=None, now=time.time())
    seconds = time.perf_counter() - start
    claimed.claim.close()
    return seconds, claimed.record.task.id


def move_to_done(repo: Path, ids: list[str]) -> None:
    tasks_dir = repo / ".stigmergy" / "tasks"
    for tid in ids:
        os.rename(tasks_dir / "pending" / f"{tid}.yaml", tasks_dir / "done" / f"{tid}.yaml")


def count_files(repo: Path, state: str) -> int:
    return sum(1 for p in (repo / ".stigmergy/tasks" / state).iterdir() if p.suffix == ".yaml")


# -- in-process, one claimer -------------------------------------------------------------------


def in_process(n: int, n_done: int) -> float:
    """Prints the in-process figures; returns the median claim of the pending-only pool."""
    with temp_repo("claim-pending") as alone, temp_repo("claim-done") as beside:
        pending = [task_id(i, "p") for i in range(1, n + 1)]
        done = [task_id(i, "d") for i in range(1, n_done + 1)]
        import_plain(alone, pending)
        import_plain(beside, pending + done)
        move_to_done(beside, done)
        pools = [open_store(alone), open_store(beside)]
        for store, _ in pools:  # as an agent's first look would: brings the pending cache
            store.scan(time.time(), states=("pending",))  # up to date after the moves
        times: list[list[float]] = [[], []]
        for _ in range(n):
            for k, (store, cfg) in enumerate(pools):
                times[k].append(claim_one(store, cfg, "bench-agent")[0])
        active = [count_files(r, "active") for r in (alone, beside)]
        for k, label in enumerate(
            (f"{count(n)} pending", f"{count(n)} pending + {count(n_done)} done")
        ):
            med = median(times[k])
            print(
                f"claim_best in-process, {count(n)} claims from {label}: {ms_stats(times[k])} "
                f"{of_bar(med, BAR_IN_PROCESS, millis)} "
                f"[{millis(min(times[k]))}-{millis(max(times[k]))}]; "
                f"{count(active[k])} active after"
            )
        print(f"   done tasks' effect on the median: {median(times[1]) / median(times[0]):.2f}x")
        # The pool shrinks by one per claim: the first and last tenth show what its size costs.
        tenth = max(n // 10, 1)
        early, late = median(times[0][:tenth]), median(times[0][-tenth:])
        per_1000 = (early - late) / max(n - tenth, 1) * 1000
        print(
            f"   pool size: first {tenth} claims ({n}-{n - tenth + 1} pending) median "
            f"{millis(early)}, last {tenth} ({tenth}-1 pending) {millis(late)}: about "
            f"{millis(per_1000)} more per 1,000 pending tasks"
        )

        # Profile a run of the same shape: refill the first pool, claim it empty again.
        import_plain(alone, [task_id(i, "r") for i in range(1, n + 1)])
        store, cfg = pools[0]
        store.scan(time.time(), states=("pending",))
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(n):
            claimed = claims.claim_best(store, cfg, "bench-agent", role=None, now=time.time())
            claimed.claim.close()
        profiler.disable()
        where_time_goes(profiler, n)
    return median(times[0])


def where_time_goes(profiler: cProfile.Profile, calls: int) -> None:
    profile = pstats.Stats(profiler).get_stats_profile()
    funcs = profile.func_profiles
    total = funcs["claim_best"].cumtime

    def share(name: str, field: str = "cumtime") -> float:
        found = funcs.get(name)
        return float(getattr(found, field)) / total if found is not None else 0.0

    top = sorted(
        (
            (name, fp)
            for name, fp in funcs.items()
            if name not in {"claim_best", "<built-in method builtins.exec>"}
        ),
        key=lambda item: item[1].cumtime,
        reverse=True,
    )[:5]
    shown = "; ".join(f"{name} {fp.cumtime / total:.0%}" for name, fp in top)
    fsync_name = "<built-in method posix.fsync>"
    fsync = funcs.get(fsync_name)
    fsyncs = int(fsync.ncalls.split("/")[0]) / calls if fsync is not None else 0.0
    print(
        f"   cProfile of {count(calls)} more claims ({millis(total / calls)} per claim under "
        f"the profiler), top 5 by cumulative time: {shown}"
    )
    print(
        f"   where the time goes: taking the lock and moving the task (_take) "
        f"{share('_take'):.0%}, scanning pending/ {share('scan'):.0%} (of which rewriting its "
        f"list cache {share('_write_cache'):.0%}); fsync "
        f"{share(fsync_name, 'tottime'):.0%} of the claim time, {fsyncs:.0f} per claim"
    )


# -- whole process ------------------------------------------------------------------------


def whole_process(runs: int) -> float:
    """Prints the one-at-a-time figures; returns the median first claim of a new agent.

    `task claim` also prepares the agent's worktree: `git worktree add` the first time an
    agent id is seen, a reset after that. So two kinds of call take turns: a claim by a new
    agent id, and a claim by one fixed agent whose worktree exists (its task is given back with
    an untimed `task release` before each of its claims).
    """
    with temp_repo("claim-cli") as repo:
        import_plain(repo, [task_id(i, "p") for i in range(1, 501)])
        agents = iter(range(10_000))

        def first_claim() -> float:
            argv: list[str | Path] = [CLI, "task", "claim", "--agent", f"a{next(agents)}"]
            return run([*argv, "--json"], repo).seconds

        def claim_again() -> tuple[float, str]:
            done = run([CLI, "task", "claim", "--agent", "fixed", "--json"], repo, capture=True)
            return done.seconds, str(json.loads(done.stdout)["id"])

        for _ in range(2):  # warm-up: bytecode written, page cache filled
            first_claim()
        _, held = claim_again()  # creates the fixed agent's worktree
        firsts: list[float] = []
        agains: list[float] = []
        for _ in range(runs):
            firsts.append(first_claim())
            run([CLI, "task", "release", held, "--agent", "fixed"], repo)
            seconds, held = claim_again()
            agains.append(seconds)
        med = median(firsts)
        print(
            f"task claim --json, one process at a time, pool of 500, first claim by a new agent "
            f"(creates its worktree): {ms_stats(firsts)} {of_bar(med, BAR_PROCESS, millis)} "
            f"over {runs} runs"
        )
        print(
            f"task claim --json, one process at a time, pool of 500, by an agent whose worktree "
            f"exists (resets it; `task release` between claims, untimed): {ms_stats(agains)} "
            f"{of_bar(median(agains), BAR_PROCESS, millis)} over {runs} runs, taking turns "
            f"with the line above"
        )
        return med


# -- contended --------------------------------------------------------------------------------


def sharing(alone: float) -> str:
    """What CPU sharing alone would make of `alone` with RACERS busy on this machine."""
    cpus = os.cpu_count() or 1
    return (
        f"alone: median {millis(alone)}; {RACERS} busy on {cpus} CPUs would take "
        f"~{millis(alone * max(RACERS / cpus, 1))} each from CPU sharing alone"
    )


RaceResult = tuple[list[float], list[str], int]  # latencies, task ids won, lock races lost


def _racer(root: str, agent: str, barrier: Barrier, results: Queue[RaceResult]) -> None:
    store, cfg = open_store(Path(root))
    latencies: list[float] = []
    won: list[str] = []
    lost = 0
    real_acquire = locks.acquire

    def counting_acquire(layout: Layout, task_id: str, owner: locks.Owner) -> locks.Claim | None:
        nonlocal lost
        got = real_acquire(layout, task_id, owner)
        lost += got is None
        return got

    # In this forked child only: count the lock races lost (claim_best then tries the next).
    locks.acquire = counting_acquire
    barrier.wait(timeout=60)
    while True:
        try:
            seconds, tid = claim_one(store, cfg, agent)
        except claims.NothingClaimable:
            break
        latencies.append(seconds)
        won.append(tid)
    results.put((latencies, won, lost))


def contended_in_process(n: int, alone: float) -> None:
    with temp_repo("claim-race") as repo:
        ids = [task_id(i, "p") for i in range(1, n + 1)]
        import_plain(repo, ids)
        ctx = multiprocessing.get_context("fork")
        barrier = ctx.Barrier(RACERS + 1)
        results: Queue[RaceResult] = ctx.Queue()
        procs = [
            ctx.Process(target=_racer, args=(str(repo), f"racer{k}", barrier, results))
            for k in range(RACERS)
        ]
        for proc in procs:
            proc.start()
        barrier.wait(timeout=60)
        start = time.perf_counter()
        gathered = gather(procs, results, timeout=300)
        wall = time.perf_counter() - start
        for proc in procs:
            proc.join(timeout=60)
        latencies = [s for lat, _, _ in gathered for s in lat]
        winners = Counter(tid for _, won, _ in gathered for tid in won)
        lost = sum(n_lost for _, _, n_lost in gathered)
        once = set(winners) == set(ids) and all(c == 1 for c in winners.values())
        per_racer = sorted(len(won) for _, won, _ in gathered)
        left = count_files(repo, "pending")
        print(
            f"claim_best, {RACERS} processes racing for {count(n)} tasks: per claim "
            f"{ms_stats(latencies)} {of_bar(median(latencies), BAR_IN_PROCESS, millis)}; "
            f"{len(latencies) / wall:,.0f} claims/s in all ({secs(wall)}); "
            f"claims per process {per_racer[0]}-{per_racer[-1]}; "
            f"{lost / max(len(latencies), 1):.1f} lock races lost per claim won"
        )
        print(f"   {sharing(alone)}")
        print(
            f"   exactly once: {'yes' if once and left == 0 else 'no'} "
            f"({count(len(winners))} of {count(n)} tasks won, "
            f"{sum(c > 1 for c in winners.values())} won twice or more, {left} left pending)"
        )


def contended_processes(rounds: int, alone: float) -> None:
    with temp_repo("claim-cli-race") as repo:
        import_plain(repo, [task_id(i, "p") for i in range(1, 501)])
        run([CLI, "task", "claim", "--agent", "warm-up", "--json"], repo)  # writes bytecode
        times: list[float] = []
        rounds_wall: list[float] = []
        won: Counter[str] = Counter()
        agents = iter(range(10_000))
        with ThreadPoolExecutor(max_workers=RACERS) as pool:
            for _ in range(rounds):
                gate = threading.Barrier(RACERS)

                def one(agent: str, gate: threading.Barrier = gate) -> tuple[float, str]:
                    gate.wait(timeout=60)
                    done = run(
                        [CLI, "task", "claim", "--agent", agent, "--json"], repo, capture=True
                    )
                    return done.seconds, str(json.loads(done.stdout)["id"])

                start = time.perf_counter()
                outcomes = list(pool.map(one, [f"c{next(agents)}" for _ in range(RACERS)]))
                rounds_wall.append(time.perf_counter() - start)
                times += [s for s, _ in outcomes]
                won.update(tid for _, tid in outcomes)
        once = len(won) == RACERS * rounds and all(c == 1 for c in won.values())
        print(
            f"task claim --json, {RACERS} processes at once, {rounds} rounds, each a new agent "
            f"(creates its worktree): per process "
            f"{ms_stats(times)} {of_bar(median(times), BAR_PROCESS, millis)}; "
            f"a round of {RACERS} takes {secs(median(rounds_wall))} (median); "
            f"exactly once: {'yes' if once else 'no'}"
        )
        print(f"   {sharing(alone)}")


def body() -> None:
    args = parse_args(__doc__ or "")
    quick: bool = args.quick
    n, n_done, runs, race, rounds = (100, 1_000, 10, 160, 2) if quick else (500, 5_000, 30, 320, 3)
    header("claim latency", quick)
    print(
        "   for scale: peers' claim commands: Backlog.md 0.84 s, Task Master 3.6 s per call at "
        "1,000 tasks; both let two agents own one task when 8 race\n"
    )
    alone_call = in_process(n, n_done)
    alone_process = whole_process(runs)
    contended_in_process(race, alone_call)
    contended_processes(rounds, alone_process)


if __name__ == "__main__":
    main_guard(body)
