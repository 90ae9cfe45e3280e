"""Soak: one agent through 2,000 tiny tasks; do its open files and child processes stay flat?

One agent runs in this process (`agent_loop.Agent(...).run()`, idle_exit=0) through 2,000
tasks whose executor is `true`, in a small repository (20 committed files), in one run. Every
250 tasks, just before the next claim (no executor or git process should be running then), it
records this process's open file descriptors (/proc/self/fd), its live child processes (every
/proc/<pid>/stat whose parent is this process, zombies included), its threads and its resident
memory, and the wall time per task since the last sample.

The tasks arrive 250 at a time: each sample is followed by a `task import` of the next 250
(untimed), so the pending pool stays at 250 or fewer. With all 2,000 pending from the start
the run takes over 2.5 minutes, because each task (as of this writing) scans the whole
pending pool twice, in the claim and in the dependency nudge after the merge: about 120 ms
per task at 2,000 pending against 40 ms near empty. That cost belongs to the pool's size,
not to a long-running agent.

Kept apart from bench_agents.py so that each script's default run stays under two minutes.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    CLI,
    BenchError,
    count,
    header,
    main_guard,
    millis,
    parse_args,
    plain_yaml,
    run,
    secs,
    task_id,
    temp_repo,
)

from stigmergy_cli import claims
from stigmergy_cli.agent_loop import Agent, AgentOptions
from stigmergy_cli.environment import open_environment

EVERY = 250  # tasks between two samples
REPO_FILES = 20
RSS_SLACK_MB = 5.0  # growth of resident memory still called stable (allocator noise, caches)


@dataclass
class Sample:
    tasks: int
    at: float
    fds: int
    children: int
    zombies: int
    threads: int
    rss_mb: float
    refill: float = 0.0  # seconds spent importing the next batch right after this sample


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir itself opened


def children() -> tuple[int, int]:
    """(live children of this process, of which zombies)."""
    me = os.getpid()
    found = zombies = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue  # gone since the listing
        state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(ppid) == me:
            found += 1
            zombies += state == "Z"
    return found, zombies


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def sample(tasks: int) -> Sample:
    kids, zombies = children()
    return Sample(
        tasks, time.perf_counter(), open_fds(), kids, zombies, threading.active_count(), rss_mb()
    )


def per_task(a: Sample, b: Sample) -> float:
    """Seconds per task between two samples, the import after the first left out."""
    return (b.at - a.at - a.refill) / (b.tasks - a.tasks)


def soak(n: int) -> None:
    with temp_repo("soak", files=REPO_FILES, allow_empty=True) as repo:
        ids = [task_id(i) for i in range(1, n + 1)]
        batches = [ids[k : k + EVERY] for k in range(0, n, EVERY)]

        def feed(batch: list[str]) -> float:
            source = repo.parent / f"soak-{batch[0]}.yaml"
            source.write_text(plain_yaml(batch))
            return run([CLI, "task", "import", source], repo).seconds

        imported = feed(batches[0])
        env = open_environment(repo, None, {})
        samples: list[Sample] = []
        claims_made = 0
        real_claim = claims.claim_best

        def sampling_claim(*args: Any, **kwargs: Any) -> claims.Claimed:
            nonlocal claims_made, imported
            if claims_made % EVERY == 0 or claims_made == n:
                samples.append(sample(claims_made))
                k = claims_made // EVERY
                if claims_made % EVERY == 0 and 0 < k < len(batches):
                    samples[-1].refill = feed(batches[k])
                    imported += samples[-1].refill
            claims_made += 1
            return real_claim(*args, **kwargs)

        agent = Agent(env, AgentOptions(agent="soak", command="true", idle_exit=0))
        claims.claim_best = sampling_claim
        try:
            start = time.perf_counter()
            summary = agent.run()
            wall = time.perf_counter() - start
        finally:
            claims.claim_best = real_claim
        after = sample(n)
    if summary.done != n:
        raise BenchError(f"the agent did {summary.done} of {n} tasks: {summary.outcomes[-3:]}")
    refills = sum(s.refill for s in samples)
    print(
        f"soak, one in-process agent, {count(n)} tasks of `true` imported {EVERY} at a time "
        f"({secs(imported)} importing, untimed): {secs(wall - refills)}, "
        f"{millis((wall - refills) / n)} per task; sampled every {EVERY} tasks, before the "
        f"next claim:"
    )
    print("   tasks   ms/task   open fds   children   threads   RSS MB")
    previous: Sample | None = None
    for s in samples:
        pace = "" if previous is None else millis(per_task(previous, s))
        zombies = f" ({s.zombies} zombie)" if s.zombies else ""
        print(
            f"   {s.tasks:>5}   {pace:>7}   {s.fds:>8}   {s.children:>8}{zombies}   "
            f"{s.threads:>7}   {s.rss_mb:>6.1f}"
        )
        previous = s
    print(
        f"   after run() returned: {after.fds} open fds, {after.children} children, "
        f"{after.threads} threads (heartbeat thread stopped), {after.rss_mb:.1f} MB"
    )
    steady = [s for s in samples if s.tasks >= EVERY] or samples
    fds = {s.fds for s in steady}
    kids = max(s.children for s in samples)
    threads = {s.threads for s in steady}
    growth = steady[-1].rss_mb - steady[0].rss_mb
    paces = [per_task(a, b) for a, b in itertools.pairwise(samples)]
    stable = len(fds) == 1 and kids == 0 and len(threads) == 1 and growth <= RSS_SLACK_MB
    print(
        f"   stable: {'yes' if stable else 'NO'} (from task {steady[0].tasks} on: open fds "
        f"{min(fds)}-{max(fds)}, children at most {kids}, threads {min(threads)}-{max(threads)}, "
        f"RSS {growth:+.1f} MB; per task {millis(paces[0])} in the first window, "
        f"{millis(paces[-1])} in the last)"
    )


def body() -> None:
    args = parse_args(__doc__ or "")
    quick: bool = args.quick
    header("soak: one agent, many tasks", quick)
    soak(300 if quick else 2_000)


if __name__ == "__main__":
    main_guard(body)
