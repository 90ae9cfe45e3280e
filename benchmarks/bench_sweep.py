"""`stigmergy sweep --json` on 10,000 tasks, 100 of them claimed: dead holders, then live ones.

100 tasks are imported and claimed in-process with `claims.claim_best`, a fresh agent name each,
and every claim's flock is dropped at once: to a sweep on this host their holders look dead.
(claim_best scans every pending task, about 25 ms per 1,000 of them, so the claims are made
before the other 9,900 tasks are imported.) One untimed `sweep --dry-run` writes bytecode and
the list cache of every state, as cron's earlier sweeps would have. The first timed sweep then
reclaims all 100; later sweeps find nothing to do (the steady state). Last, a helper child
process claims 100 tasks by name and keeps running, holding their flocks, while the sweep is
timed again: it must judge 100 live claims and leave them alone.

Each sweep is one whole process with its stdout captured (the JSON report, a few kB), so its
actions can be counted. The script waits out the list cache's 2-second window before each timed
series, as a sweep from cron would find files older than that.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections import Counter
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from _common import (
    CACHE_SETTLE,
    CLI,
    count,
    gather,
    header,
    import_plain,
    main_guard,
    median,
    of_bar,
    parse_args,
    run,
    secs,
    task_id,
    temp_repo,
)

from stigmergy_cli import claims
from stigmergy_cli.environment import open_environment

BAR = 1.0  # seconds per sweep


def sweep(repo: Path) -> tuple[float, dict[str, Any]]:
    """One timed `stigmergy sweep --json`: (seconds, its report)."""
    done = run([CLI, "sweep", "--json"], repo, capture=True)
    report: dict[str, Any] = json.loads(done.stdout)
    return done.seconds, report


def did(report: dict[str, Any]) -> str:
    kinds = Counter(str(a["kind"]) for a in report["actions"])
    what = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return (
        f"{count(len(report['actions']))} actions{f' ({what})' if what else ''}, "
        f"{count(report['live_locks'])} live locks left alone"
    )


def sweeps(repo: Path, runs: int, label: str, which: str) -> None:
    times, reports = zip(*(sweep(repo) for _ in range(runs)), strict=True)
    print(
        f"{label}: {which} sweep {secs(times[0])}, median of {runs} {secs(median(times))} "
        f"{of_bar(median(times), BAR, secs)}; each: {did(reports[-1])}"
        + ("" if len({len(r["actions"]) for r in reports}) == 1 else " (varied!)")
    )


def _holder(root: str, ids: list[str], ready: Queue[list[str]], finish: Event) -> None:
    """Claim `ids` and hold their flocks until told to finish (then exit, dropping them)."""
    env = open_environment(Path(root), None, {})
    store = env.store
    taken = [
        claims.claim_named(store, env.config, f"live{k}", tid, role=None, now=time.time())
        for k, tid in enumerate(ids)
    ]
    ready.put([c.record.task.id for c in taken])
    finish.wait(timeout=600)
    for claimed in taken:
        claimed.claim.close()


def body() -> None:
    args = parse_args(__doc__ or "")
    quick: bool = args.quick
    n, held, runs = (1_000, 20, 3) if quick else (10_000, 100, 5)
    header(f"sweep over {count(n)} tasks, {held} claimed", quick)
    with temp_repo("sweep") as repo:
        # claim_best scans every pending task, so the claims are made while the pool holds
        # only the tasks to claim; the rest of the pool is imported after them.
        ids = [task_id(i) for i in range(1, n + 1)]
        imported = import_plain(repo, ids[:held])
        env = open_environment(repo, None, {})
        store = env.store
        start = time.perf_counter()
        for k in range(held):
            claimed = claims.claim_best(store, env.config, f"gone{k}", role=None, now=time.time())
            claimed.claim.close()  # drops the flock: from this host the holder looks dead
        made = time.perf_counter() - start
        imported += import_plain(repo, ids[held:])
        run([CLI, "sweep", "--dry-run", "--json"], repo)  # untimed: writes bytecode, list caches
        print(
            f"set-up: {held} in-process claims from a pool of {held} {secs(made)}, then "
            f"task import of the other {count(n - held)} (both imports {secs(imported)})"
        )
        time.sleep(CACHE_SETTLE)
        first, report = sweep(repo)
        print(
            f"sweep --json, {held} dead claims: first sweep {secs(first)} "
            f"{of_bar(first, BAR, secs)}; {did(report)}"
        )
        time.sleep(CACHE_SETTLE)
        sweeps(repo, runs, "sweep --json, nothing to do (steady state)", "second")

        ctx = multiprocessing.get_context("fork")
        ready: Queue[list[str]] = ctx.Queue()
        finish = ctx.Event()
        live_ids = ids[-held:]  # claim_named: no scan of the 10,000 pending tasks per claim
        holder = ctx.Process(target=_holder, args=(str(repo), live_ids, ready, finish))
        holder.start()
        try:
            (taken,) = gather([holder], ready, timeout=300)
            time.sleep(CACHE_SETTLE)
            sweeps(repo, runs, f"sweep --json, {len(taken)} live claims held by a process", "first")
        finally:
            finish.set()
            holder.join(timeout=60)
            if holder.is_alive():
                holder.kill()


if __name__ == "__main__":
    main_guard(body)
