"""The git backend: claim round trips and throughput against `git daemon` on 127.0.0.1.

A bare repository is served by `git daemon` on a free local port (a real network transport:
git's own protocol over TCP). Four clones are the machines, each `stigmergy init --remote
origin`. For 1, 8 and 32 agent processes (spread over the four clones), the pool gets a batch
of tasks; every process then claims and finishes tasks until none is left, timing each step:

- claim: `RemotePool.claim_best`: a fetch of the remote's task and claim refs, the ranking,
  and one atomic push (task pending → active, claim created). A push that loses a race costs
  another push for the next candidate: counted as retries.
- finish: one atomic push (task → done, claim deleted), as a task with no change lands.

Past 32 connections at once, git daemon kills one of those from an address holding several
(all of ours are 127.0.0.1). Such pushes are counted apart: a finish tries again on its own
(`RemotePool._push`), and a claim is looked for again 0.2 s later, as an agent would.

Every task must be claimed exactly once (checked on the remote: each task's ref history has
one "active" commit). On a real server add the network's round trip (typically 20-100 ms) to
every fetch and push.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from _common import (
    BenchError,
    gather,
    git,
    header,
    main_guard,
    median,
    millis,
    parse_args,
    percentile,
    scratch_dir,
    secs,
    stigmergy,
    task_id,
)

from stigmergy_cli import tasks
from stigmergy_cli.claims import NothingClaimable
from stigmergy_cli.environment import open_environment
from stigmergy_cli.remote import PushResult, RemoteUnreachable, Update
from stigmergy_cli.remote_pool import RemotePool

MACHINES = 4


class Daemon:
    def __init__(self, base: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                f"--base-path={base}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise BenchError("git daemon did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


# (agent, claim times, finish times, pushes refused, pushes whose connection dropped)
Timings = tuple[str, list[float], list[float], int, int]
CLAIM_RETRY = 0.2  # seconds between claims after a dropped connection, as an agent waits
CLAIM_DROPS_MAX = 25  # in a row: the server is gone, not busy


def worker(root: str, agent: str, gate: Barrier, out: Queue[Timings]) -> None:
    env = open_environment(Path(root), None, {})
    pool = RemotePool(env.layout, env.config)
    pool.refresh()
    refused = dropped = 0
    push = pool.remote.push

    def counted(updates: Sequence[Update]) -> PushResult:
        nonlocal refused, dropped
        try:
            result = push(updates)
        except RemoteUnreachable:
            dropped += 1
            raise
        refused += not result.ok
        return result

    pool.remote.push = counted  # type: ignore[method-assign]
    claim_times: list[float] = []
    finish_times: list[float] = []
    gate.wait(timeout=120)
    drops_in_a_row = 0
    while True:
        start = time.perf_counter()
        try:
            held = pool.claim_best(agent, role=None, now=time.time())
        except NothingClaimable:
            break
        except RemoteUnreachable:  # past git daemon's 32 connections: look again, as agents do
            drops_in_a_row += 1
            if drops_in_a_row >= CLAIM_DROPS_MAX:
                raise
            time.sleep(CLAIM_RETRY)
            continue
        drops_in_a_row = 0
        claimed = time.perf_counter()
        pool.land(held, agent, None, None, time.time())
        claim_times.append(claimed - start)
        finish_times.append(time.perf_counter() - claimed)
    out.put((agent, claim_times, finish_times, refused, dropped))


def one_size(machines: list[Path], bare: Path, agents: int, n_tasks: int) -> None:
    ids = [task_id(i, prefix=f"a{agents}-") for i in range(1, n_tasks + 1)]
    env = open_environment(machines[0], None, {})
    added = time.perf_counter()
    RemotePool(env.layout, env.config).add_many(
        [
            tasks.new_task({"id": t, "title": f"Task {t}"}, now=time.time(), created_by="bench")
            for t in ids
        ]
    )
    added = time.perf_counter() - added
    ctx = multiprocessing.get_context("fork")
    gate = ctx.Barrier(agents)
    out: Queue[Timings] = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(str(machines[k % len(machines)]), f"w{k}", gate, out))
        for k in range(agents)
    ]
    wall = time.perf_counter()
    for proc in procs:
        proc.start()
    results = gather(procs, out, timeout=600)
    for proc in procs:
        proc.join(timeout=60)
    wall = time.perf_counter() - wall
    claims = [t for _, c, _, _, _ in results for t in c]
    finishes = [t for _, _, f, _, _ in results for t in f]
    per_agent = sorted(len(c) for _, c, _, _, _ in results)
    lost_races = sum(r for *_, r, _ in results)
    dropped = sum(d for *_, d in results)
    actives: Counter[str] = Counter()
    for tid in ids:
        log = subprocess.run(
            ["git", "log", "--format=%s", f"refs/stigmergy/tasks/{tid}"],
            cwd=bare,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        actives[tid] = sum(line.endswith(": active") for line in log.splitlines())
    once = all(actives[t] == 1 for t in ids)
    total = sum(per_agent)
    print(
        f"{agents:>2} agent{'s' if agents > 1 else ' '} ({min(agents, MACHINES)} clone(s)), "
        f"{n_tasks} tasks: claim median {millis(median(claims))}, p95 "
        f"{millis(percentile(claims, 95))}; finish median {millis(median(finishes))}; "
        f"{total / wall:.1f} tasks/s claimed and finished ({wall:.1f} s incl. process start); "
        f"per agent {per_agent[0]}-{per_agent[-1]}; exactly once: {'yes' if once else 'NO'}"
    )
    print(
        f"   {lost_races} pushes lost a race ({lost_races / max(1, sum(per_agent)):.2f} per "
        f"task), {dropped} lost their connection and were tried again; the {n_tasks} tasks "
        f"were added in one atomic push in {secs(added)}"
    )
    if not once:
        raise BenchError(f"tasks claimed more than once: {[t for t in ids if actives[t] != 1]}")


def body() -> None:
    args = parse_args(__doc__ or "")
    quick: bool = args.quick
    header("git backend: claims through git daemon on 127.0.0.1", quick)
    sizes = [(1, 20), (8, 64), (32, 128)] if quick else [(1, 50), (8, 200), (32, 320)]
    with scratch_dir("remote") as tmp:
        base = tmp
        bare = base / "origin.git"
        git(base, "init", "-q", "--bare", "-b", "main", str(bare))
        seed = base / "seed"
        git(base, "clone", "-q", str(bare), str(seed))
        git(seed, "commit", "-q", "--allow-empty", "-m", "initial")
        git(seed, "push", "-q", "origin", "main")
        daemon = Daemon(base)
        try:
            url = f"git://127.0.0.1:{daemon.port}/origin.git"
            machines = []
            for k in range(MACHINES):
                clone = base / f"machine{k}"
                git(base, "clone", "-q", url, str(clone))
                stigmergy("init", "--remote", "origin", cwd=clone)
                machines.append(clone)
            for agents, n_tasks in sizes:
                one_size(machines, bare, agents, n_tasks)
        finally:
            daemon.stop()


if __name__ == "__main__":
    main_guard(body)
