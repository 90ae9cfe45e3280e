"""Agent loop: per-task overhead, parallel efficiency, idle wake-up and CPU, throughput.

1. Overhead: one agent in this process (`agent_loop.Agent(...).run()`, idle_exit=0) works
   through 200 tasks whose executor is `true`, in a small repository (20 committed files),
   with `tasks.allow_empty` set (a task that changes nothing is done, not a failed attempt). A
   task is timed from one `claims.claim_best` call to the next; every git process is counted
   and timed by wrapping `gitops.run`. One more run of the same shape under cProfile says
   where the time goes (its agent's worktree already exists).
2. Parallel efficiency: 20 `stigmergy agent run` processes, started and idle (for 1 s after the
   last one went idle) before any task exists, then one `task import` of 100 independent
   tasks whose executor sleeps 2 s and writes one file. Makespan: from the import's start to
   the last merge, the later of the last "merged" event (stamped as integration starts) and
   the last task's arrival in done/ (the merge's last step; the mtime of done/). Speed-up
   over one agent: 100 x (2 s + one agent's measured overhead per task) / makespan; that
   overhead comes from one agent process running 10 tasks of the same executor with a 0.2 s
   sleep. Every task must land exactly once: one "merged" event, one result commit on the
   target, its file in the target's tree.
3. Idle: one idle agent process; `task add`; time from the add's exit to the agent's "claimed"
   event (5 times, 2 s apart). Then 5 idle agent processes for 10 s: their CPU time from
   /proc/<pid>/stat.
4. Throughput: 1,000 tasks (executor `true`) through 8 agent processes, with a thread in this
   process sampling the integration lock (a non-blocking flock every 2 ms) to tell how much of
   the time it is held. Then the same shape with 8 agents as threads of this process and
   `locks.integration_lock` wrapped to time each hold.

The soak (one agent through 2,000 tasks: open files, child processes) is bench_soak.py.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import itertools
import json
import os
import resource
import signal
import subprocess
import threading
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import (
    CLI,
    BenchError,
    bench_env,
    count,
    cpu_speed,
    file_speed,
    header,
    main_guard,
    median,
    millis,
    of_bar,
    of_floor,
    parse_args,
    percentile,
    plain_yaml,
    run,
    secs,
    task_id,
    temp_repo,
)

from stigmergy_cli import claims, events, gitops, locks
from stigmergy_cli.agent_loop import Agent, AgentOptions
from stigmergy_cli.environment import open_environment
from stigmergy_cli.oslock import FileLock, is_locked
from stigmergy_cli.paths import Layout

BAR_TASK = 0.250  # seconds of overhead per task (empty executor)
AIM_TASK = 0.100
BAR_EFFICIENCY = 0.90  # parallel efficiency, at least
AIM_EFFICIENCY = 0.95
BAR_WAKE = 0.200  # seconds from `task add` to an idle agent's claim
BAR_IDLE_CPU = 1.0  # percent of one core per idle agent
REPO_FILES = 20  # committed files in the "small repository"
WRITE_FILE = 'echo x > "$STIGMERGY_TASK_ID.txt"'
# --idle-exit of the parallel run's agents: longer than the first one waits for the import (the
# others' start-up, then the settle time), or it would leave before the work arrives.
IDLE_EXIT = 8.0
SAFETY_EXIT = 120.0  # --idle-exit of agents this script stops itself (if it dies, they go too)
LOCK_SAMPLE = 0.002  # seconds between two looks at the integration lock


def pct(value: float) -> str:
    return f"{value:.0%}"


def ms_stats(values: Sequence[float]) -> str:
    return f"median {millis(median(values))}, p90 {millis(percentile(values, 90))}"


@contextlib.contextmanager
def patched(owner: object, name: str, value: object) -> Iterator[None]:
    """Replace `owner.name` with `value` for the duration (module functions, in this process)."""
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def cpu_seconds() -> tuple[float, float]:
    """CPU time (user + system) of this process and of its waited-for children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def cpu_ticks(pid: int, *, children: bool = False) -> int | None:
    """utime + stime of a process in clock ticks (fields 14 and 15 of /proc/<pid>/stat), plus
    with `children` those of the children it has waited for (cutime, cstime: 16 and 17); None
    once it has exited and been waited for (a crashed agent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
    return sum(int(f) for f in fields[11 : 15 if children else 13])


def machine_busy() -> int:
    """Clock ticks all CPUs spent busy since boot (/proc/stat: all but idle and iowait)."""
    ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4]


class CpuWatch:
    """CPU used by some agent processes (and their children) over a span, and by every other
    process on the machine meanwhile: this script and what it waited for excepted."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.hz = os.sysconf("SC_CLK_TCK")
        self.agents = {pid: cpu_ticks(pid, children=True) or 0 for pid in pids}
        self._start = self._snapshot()

    def _snapshot(self) -> tuple[float, int, int]:
        me = cpu_ticks(os.getpid(), children=True) or 0
        return time.time(), me, machine_busy()

    def stop(self) -> tuple[float, float, float]:
        """(seconds of the span, CPU seconds of the agents, share of all CPUs used by others).

        An agent gone meanwhile counts as having used nothing: its time shows up as others'."""
        end = self._snapshot()
        span = end[0] - self._start[0]
        me, busy = end[1] - self._start[1], end[2] - self._start[2]
        agents = sum(
            (cpu_ticks(pid, children=True) or before) - before
            for pid, before in self.agents.items()
        )
        cpus = os.cpu_count() or 1
        others = max(busy - agents - me, 0) / self.hz / (span * cpus)
        return span, agents / self.hz, others


def import_tasks(repo: Path, ids: Sequence[str]) -> tuple[float, float]:
    """`task import` of plain tasks; returns (wall-clock start, seconds it took)."""
    source = repo.parent / f"import-{ids[0]}-{len(ids)}.yaml"
    source.write_text(plain_yaml(ids))
    try:
        start = time.time()
        return start, run([CLI, "task", "import", source], repo).seconds
    finally:
        source.unlink()


def read_events(repo: Path) -> list[dict[str, Any]]:
    return list(events.read(Layout(repo).events))


def task_files(repo: Path, state: str) -> list[str]:
    return [n for n in os.listdir(Layout(repo).state_dir(state)) if n.endswith(".yaml")]


def done_count(repo: Path) -> int:
    return len(task_files(repo, "done"))


def in_flight(repo: Path) -> int:
    return len(task_files(repo, "pending")) + len(task_files(repo, "active"))


def where_is(repo: Path, tid: str) -> str:
    """Where a task that did not merge ended up, and why, from its files and the event log."""
    layout = Layout(repo)
    places = [
        s
        for s in ("pending", "active", "done", "failed", "cancelled")
        if tid in {n[:-5] for n in task_files(repo, s)}
    ]
    if layout.corrupt.is_dir():
        places += [f"corrupt/{n}" for n in os.listdir(layout.corrupt) if f".{tid}.yaml" in n]
    why = [
        f"{e['event']}: {e.get('reason') or e.get('detail') or ''}".strip()
        for e in read_events(repo)
        if e["event"] in (events.QUARANTINED, events.FAILED, events.SWEPT)
        and (e.get("task") == tid or Path(str(e.get("task"))).stem == tid)
    ]
    return f"{tid} in {', '.join(places) or 'no state directory'}" + (
        f" ({'; '.join(why)})" if why else ""
    )


def trouble(repo: Path, crowd: Fleet, ids: Sequence[str], merged: Counter[str]) -> list[str]:
    """Lines for tasks that did not merge exactly once and agents that crashed."""
    lines = [f"NOT MERGED ONCE: {where_is(repo, t)}" for t in ids if merged[t] != 1]
    return lines + [f"CRASHED: {line}" for line in crowd.crashed()]


# -- git processes, counted and timed ------------------------------------------------------------


def git_command(args: Sequence[str]) -> str:
    """`rev-parse` for `git -c a=b rev-parse ...`."""
    words = iter(args)
    for word in words:
        if word == "-c":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return "?"


class GitTally:
    """Wraps gitops.run (every git process stigmergy starts) to count and time the calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.by_command: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self._real = gitops.run

    def _run(
        self, args: Sequence[str], cwd: Path, **options: Any
    ) -> subprocess.CompletedProcess[str]:
        start = time.perf_counter()
        try:
            return self._real(args, cwd, **options)
        finally:
            name = git_command(args)
            self.calls += 1
            self.by_command[name] += 1
            self.seconds[name] += time.perf_counter() - start

    def installed(self) -> contextlib.AbstractContextManager[None]:
        return patched(gitops, "run", self._run)


# -- 1. per-task overhead, in-process ------------------------------------------------------------


def per_task_overhead(n: int) -> float:
    """Prints the one-agent figures; returns the mean seconds per task."""
    with temp_repo("agents-overhead", files=REPO_FILES, allow_empty=True) as repo:
        import_tasks(repo, [task_id(i) for i in range(1, n + 1)])
        env = open_environment(repo, None, {})
        tally = GitTally()
        marks: list[tuple[float, int]] = []  # (perf_counter, git calls so far) at each claim
        real_claim = claims.claim_best

        def timed_claim(*args: Any, **kwargs: Any) -> claims.Claimed:
            marks.append((time.perf_counter(), tally.calls))
            return real_claim(*args, **kwargs)

        agent = Agent(env, AgentOptions(agent="solo", command="true", idle_exit=0))
        cpu_before = cpu_seconds()
        with tally.installed(), patched(claims, "claim_best", timed_claim):
            start = time.perf_counter()
            summary = agent.run()
            wall = time.perf_counter() - start
        own_cpu, child_cpu = (a - b for a, b in zip(cpu_seconds(), cpu_before, strict=True))
        if summary.done != n or len(marks) != n + 1:
            raise BenchError(f"one agent did {summary.done} of {n} tasks: {summary.outcomes[-3:]}")
        per_task = [b[0] - a[0] for a, b in itertools.pairwise(marks)]
        gits = [b[1] - a[1] for a, b in itertools.pairwise(marks)]
        mean = (marks[-1][0] - marks[0][0]) / n
        print(
            f"per-task overhead, one in-process agent, executor `true`, {count(n)} tasks, "
            f"{REPO_FILES} files in the repository: mean {millis(mean)} "
            f"{of_bar(mean, BAR_TASK, millis, AIM_TASK)}, {ms_stats(per_task)}; "
            f"first task (creates the worktree) {millis(per_task[0])}; "
            f"whole run {secs(wall)} ({millis(wall / n)} per task with start and stop)"
        )
        outcomes = Counter(o.split(": ", 1)[1] for o in summary.outcomes)
        print(
            f"   outcomes: {', '.join(f'{k} {v}' for k, v in outcomes.items())} "
            f"(`true` changes nothing: no result commit, nothing to merge)"
        )
        print(
            f"   CPU per task: {millis(own_cpu / n)} in this process (Python, all threads), "
            f"{millis(child_cpu / n)} in its children (git, /bin/sh); "
            f"{(own_cpu + child_cpu) / wall:.0%} of one core over the run"
        )
        git_ms = sum(tally.seconds.values())
        top = sorted(tally.by_command, key=lambda c: tally.seconds[c], reverse=True)
        shown = ", ".join(
            f"{c} {tally.by_command[c] / n:.1f} x {millis(tally.seconds[c] / tally.by_command[c])}"
            for c in top[:7]
        )
        print(
            f"   git processes per task: {tally.calls / n:.1f} on average, median "
            f"{median(gits):g}, first task {gits[0]}; {millis(git_ms / n)} of the "
            f"{millis(mean)} per task waits on git ({git_ms / wall:.0%} of the run)"
        )
        print(f"   by git command (per task x wall each): {shown}")

        # The same shape again under cProfile: refill, same agent (its worktree exists now).
        import_tasks(repo, [task_id(i, "r") for i in range(1, n + 1)])
        profiler = cProfile.Profile()
        agent = Agent(env, AgentOptions(agent="solo", command="true", idle_exit=0))
        profiler.enable()
        agent.run()
        profiler.disable()
        where_time_goes(profiler, n)
        return mean


def where_time_goes(profiler: cProfile.Profile, n: int) -> None:
    cumulative: defaultdict[tuple[str, str], float] = defaultdict(float)
    own: defaultdict[str, float] = defaultdict(float)
    calls: Counter[str] = Counter()
    for entry in profiler.getstats():
        code = entry.code
        if isinstance(code, str):  # a built-in
            own[code] += entry.inlinetime
            calls[code] += entry.callcount
        else:
            key = (Path(code.co_filename).name, code.co_name)
            cumulative[key] += entry.totaltime
    total = cumulative[("agent_loop.py", "run")]
    if total <= 0:
        raise BenchError("the profile holds no Agent.run")

    def share(module: str, func: str) -> str:
        return pct(cumulative[(f"{module}.py", func)] / total)

    steps = [
        ("claims", "claim_best"),
        ("results", "prepare"),
        ("executor", "run"),
        ("results", "commit"),
        ("merge", "integrate"),
    ]
    rest = total - sum(cumulative[(f"{m}.py", f)] for m, f in steps)
    fsync = "<built-in method posix.fsync>"
    print(
        f"   cProfile of {count(n)} more tasks ({millis(total / n)} per task under the "
        f"profiler; main thread only): gitops.run {share('gitops', 'run')} of the time; by step: "
        + ", ".join(f"{m}.{f} {share(m, f)}" for m, f in steps)
        + f", the rest (heartbeats, events, sweep, loop) {pct(rest / total)}"
    )
    print(
        f"   fsync: {calls[fsync] / n:.1f} per task, {pct(own[fsync] / total)} of the time; "
        f"inside the steps: worktree reset and clean (worktrees.reset) "
        f"{share('worktrees', 'reset')}, keeping leftovers (results.save_leftovers) "
        f"{share('results', 'save_leftovers')}, the claim's scan of pending/ "
        f"{share('store', 'scan')}, merge._land {share('merge', '_land')}, "
        f"moving the task to done (merge._finish) {share('merge', '_finish')}"
    )


# -- agent processes ------------------------------------------------------------------------------


@dataclass
class Fleet:
    """Agent processes started by this script (stopped by pid, never by name)."""

    repo: Path
    procs: dict[str, subprocess.Popen[bytes]]
    logs: Path

    def stderr(self, agent: str) -> str:
        return (self.logs / f"{agent}.err").read_text(errors="replace").strip()[-1500:]

    def alive(self) -> list[str]:
        return [agent for agent, proc in self.procs.items() if proc.poll() is None]

    def heartbeat(self, agent: str) -> dict[str, Any]:
        try:
            doc = json.loads(Layout(self.repo).heartbeat(agent).read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def wait_idle(self, timeout: float = 60) -> float:
        """Until every agent still running waits for work; returns time.time() then. Agents
        that crashed meanwhile are left to `crashed`.

        An agent writes heartbeat 1 (status idle) as it starts, and 2 (idle) when it first
        finds nothing to claim and starts watching the pool.
        """
        deadline = time.monotonic() + timeout
        while True:
            live = self.alive()
            if not live:
                logs = "\n".join(self.stderr(a) for a in self.procs)
                raise BenchError(f"every agent exited before the work began:\n{logs}")
            beats = [self.heartbeat(agent) for agent in live]
            if all(b.get("status") == "idle" and int(b.get("seq", 0)) >= 2 for b in beats):
                return time.time()
            if time.monotonic() > deadline:
                raise BenchError(f"agents not idle after {timeout:g}s")
            time.sleep(0.02)

    def wait_done(self, total: int, timeout: float) -> None:
        """Until `total` tasks are in done/ (earlier batches included), or none is left to work
        on (pending/ and active/ found empty three times in a row: the rest failed or was lost;
        `trouble` says which)."""
        deadline = time.monotonic() + timeout
        settled = 0
        while done_count(self.repo) < total:
            settled = settled + 1 if in_flight(self.repo) == 0 else 0
            if settled >= 3:
                return
            if all(p.poll() is not None for p in self.procs.values()):
                logs = "\n".join(self.stderr(a) for a in self.procs)
                raise BenchError(f"every agent exited with {done_count(self.repo)} done:\n{logs}")
            if time.monotonic() > deadline:
                raise BenchError(f"{done_count(self.repo)} of {total} tasks done after {timeout}s")
            time.sleep(0.05)
        # An agent logs a task's outcome just after moving it to done/: wait for the log too.
        landed = (events.MERGED, events.CONFLICT, events.SUCCEEDED)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if sum(e["event"] in landed for e in read_events(self.repo)) >= total:
                return
            time.sleep(0.05)

    def crashed(self) -> list[str]:
        """Agents that exited with an error, and their last words."""
        return [
            f"agent {agent} exited {proc.returncode}: {self.stderr(agent).splitlines()[-1:]}"
            for agent, proc in self.procs.items()
            if proc.poll() not in (None, 0, -signal.SIGTERM)
        ]

    def pids(self) -> dict[str, int]:
        return {agent: proc.pid for agent, proc in self.procs.items()}


@contextlib.contextmanager
def fleet(repo: Path, agents: Sequence[str], command: str, idle_exit: float) -> Iterator[Fleet]:
    """Start one `stigmergy agent run -q` process per agent id; stop the survivors after."""
    logs = repo.parent / "agent-logs"
    logs.mkdir(exist_ok=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for agent in agents:
            with (logs / f"{agent}.err").open("wb") as err:
                procs[agent] = subprocess.Popen(
                    [
                        *(CLI, "agent", "run", "--id", agent, "--exec", command),
                        *("--idle-exit", f"{idle_exit:g}", "-q"),
                    ],
                    cwd=repo,
                    env=bench_env(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
        yield Fleet(repo, procs, logs)
    finally:
        stop(procs.values())


def stop(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (an agent finishes its step and exits), then SIGKILL after 15 s."""
    started = list(procs)
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- 2. parallel efficiency ----------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """What the event log says about one imported batch of tasks."""

    ids: list[str]
    import_start: float
    import_seconds: float
    claimed: dict[str, dict[str, Any]]
    started: dict[str, dict[str, Any]]
    merged: Counter[str]
    merged_at: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, repo: Path, ids: list[str], start: float, seconds: float) -> Batch:
        wanted = set(ids)
        claimed: dict[str, dict[str, Any]] = {}
        started: dict[str, dict[str, Any]] = {}
        merged: Counter[str] = Counter()
        merged_at: dict[str, dict[str, Any]] = {}
        for event in read_events(repo):
            task = event.get("task")
            if task not in wanted:
                continue
            kind = event["event"]
            if kind == events.CLAIMED:
                claimed[task] = event
            elif kind == events.STARTED:
                started[task] = event
            elif kind == events.MERGED:
                merged[task] += 1
                merged_at[task] = event
        return cls(ids, start, seconds, claimed, started, merged, merged_at)

    @property
    def first_claim(self) -> float:
        return min(float(e["ts"]) for e in self.claimed.values())

    @property
    def last_merged(self) -> float:
        return max(float(e["ts"]) for e in self.merged_at.values())

    @property
    def makespan(self) -> float:
        return self.last_merged - self.import_start


def landed_once(repo: Path, batch: Batch) -> tuple[bool, str]:
    """Every task: one "merged" event, one result commit on main, its file in main's tree."""
    log = run(
        ["git", "log", "main", "--format=%(trailers:key=Stigmergy-Task,valueonly)"],
        repo,
        capture=True,
    ).stdout
    commits = Counter(line.strip() for line in log.splitlines() if line.strip())
    tree = set(run(["git", "ls-tree", "--name-only", "main"], repo, capture=True).stdout.split())
    ids = batch.ids
    events_ok = all(batch.merged[t] == 1 for t in ids)
    commits_ok = all(commits[t] == 1 for t in ids)
    files = sum(f"{t}.txt" in tree for t in ids)
    ok = events_ok and commits_ok and files == len(ids)
    return ok, (
        f"{sum(batch.merged[t] == 1 for t in ids)} of {len(ids)} tasks with exactly one "
        f"merged event, {sum(commits[t] == 1 for t in ids)} with exactly one result commit on "
        f"main, {files} files in main's tree"
    )


def timeline(batch: Batch, sleep: float) -> str:
    """Where the makespan beyond the sleeps went, for the agent that finished last.

    Event times: "claimed" is stamped as claim_best starts, "started" before the worktree is
    prepared, "merged" as integration starts (the merge itself is after it).
    """
    chains: defaultdict[str, list[str]] = defaultdict(list)
    finished = [t for t in batch.claimed if t in batch.started and t in batch.merged_at]
    for tid in sorted(finished, key=lambda t: float(batch.claimed[t]["ts"])):
        chains[str(batch.claimed[tid]["agent"])].append(tid)
    claim, work, after = [], [], []
    for chain in chains.values():
        for k, tid in enumerate(chain):
            claimed = float(batch.claimed[tid]["ts"])
            started = float(batch.started[tid]["ts"])
            merged = float(batch.merged_at[tid]["ts"])
            claim.append(started - claimed)
            work.append(merged - started - sleep)
            if k + 1 < len(chain):
                after.append(float(batch.claimed[chain[k + 1]]["ts"]) - merged)
    last_agent = max(chains, key=lambda a: float(batch.merged_at[chains[a][-1]]["ts"]))
    chain = chains[last_agent]
    wake = float(batch.claimed[chain[0]]["ts"]) - batch.import_start
    own_claim = sum(float(batch.started[t]["ts"]) - float(batch.claimed[t]["ts"]) for t in chain)
    own_work = sum(
        float(batch.merged_at[t]["ts"]) - float(batch.started[t]["ts"]) - sleep for t in chain
    )
    own_after = batch.makespan - wake - own_claim - own_work - len(chain) * sleep
    per_agent = sorted(len(c) for c in chains.values())
    return (
        f"tasks per agent {per_agent[0]}-{per_agent[-1]}; per task (median): claim "
        f"{millis(median(claim))}, worktree + executor + commit beyond the sleep "
        f"{millis(median(work))}, merge + next claim {millis(median(after))}\n"
        f"   first claim {secs(batch.first_claim - batch.import_start)} after the import "
        f"began; the agent that finished last ({len(chain)} tasks): first claim "
        f"{secs(wake)} after it, then {secs(own_claim)} claiming, "
        f"{secs(own_work)} beyond its sleeps preparing/running/committing, {secs(own_after)} "
        f"merging and reclaiming\n"
        f"   {rounds(batch, chains, sleep)}"
    )


def rounds(batch: Batch, chains: dict[str, list[str]], sleep: float) -> str:
    """How the agents' lag builds up: for each agent's k-th task, how long after the import's
    start plus k sleeps its merge began (the "merged" event), earliest and latest agent."""
    spans = []
    for k in range(max(len(c) for c in chains.values())):
        lags = [
            float(batch.merged_at[c[k]]["ts"]) - batch.import_start - (k + 1) * sleep
            for c in chains.values()
            if len(c) > k
        ]
        spans.append(f"{min(lags):.2f}-{max(lags):.2f}")
    return (
        "round by round, merges began this long after the import plus the sleeps so far "
        f"(earliest agent to latest): {', '.join(spans)} s"
    )


def sequential_overhead(n: int, sleep: float) -> float:
    """One agent process, n tasks `sleep S; echo x > file`: seconds per task beyond S."""
    command = f"sleep {sleep:g}; {WRITE_FILE}"
    with (
        temp_repo("agents-one", files=REPO_FILES) as repo,
        fleet(repo, ["solo"], command, IDLE_EXIT) as one,
    ):
        one.wait_idle()
        ids = [task_id(i) for i in range(1, n + 1)]
        start, seconds = import_tasks(repo, ids)
        one.wait_done(n, timeout=60 + n * (sleep + 2))
        batch = Batch.read(repo, ids, start, seconds)
        for line in trouble(repo, one, ids, batch.merged):
            print(f"   one-agent run: {line}")
        if not batch.merged_at:
            raise BenchError("the one-agent run merged nothing")
        return (batch.last_merged - batch.first_claim) / len(batch.merged_at) - sleep


def parallel(n_agents: int, n_tasks: int, sleep: float, settle: float, base: int) -> None:
    base_sleep = min(sleep, 0.2)
    overhead = sequential_overhead(base, base_sleep)
    command = f"sleep {sleep:g}; {WRITE_FILE}"
    agents = [f"w{k:02d}" for k in range(1, n_agents + 1)]
    ids = [task_id(i) for i in range(1, n_tasks + 1)]
    with (
        temp_repo("agents-parallel", files=REPO_FILES) as repo,
        fleet(repo, agents, command, IDLE_EXIT) as crowd,
    ):
        launched = time.time()
        idle_at = crowd.wait_idle()
        # Idle means done starting: the import waits `settle` more seconds, so that it does
        # not share the machine with the last agents' start-up (their fresh worktrees are
        # still being written back, which an import's flush to disk would wait for).
        time.sleep(settle)
        watch = CpuWatch(crowd.pids().values())
        start, seconds = import_tasks(repo, ids)
        crowd.wait_done(n_tasks, timeout=120 + n_tasks * sleep)
        span, cpu, others = watch.stop()
        done_dir_mtime = Layout(repo).state_dir("done").stat().st_mtime
        batch = Batch.read(repo, ids, start, seconds)
        once, detail = landed_once(repo, batch)
        problems = trouble(repo, crowd, ids, batch.merged)
        crashed = len(crowd.crashed())
    makespan = max(batch.makespan, done_dir_mtime - start)
    ideal = n_tasks * sleep / n_agents
    sequential = n_tasks * (sleep + overhead)
    speedup = sequential / makespan
    efficiency = speedup / n_agents
    print(
        f"parallel efficiency, {n_agents} agent processes, {n_tasks} independent tasks of "
        f"`sleep {sleep:g}; echo x > $STIGMERGY_TASK_ID.txt`: makespan {secs(makespan)} "
        f"(ideal {secs(ideal)}); speed-up {speedup:.1f}x over one agent; efficiency "
        f"{pct(efficiency)} {of_floor(efficiency, BAR_EFFICIENCY, pct, AIM_EFFICIENCY)}"
        + (f"; {crashed} of the {n_agents} agents CRASHED (below)" if crashed else "")
    )
    print(
        f"   one agent: {sequential:.0f} s for the same {n_tasks} tasks = {n_tasks} x "
        f"({sleep:g} s + {millis(overhead)} overhead per task, measured on {base} tasks of "
        f"`sleep {base_sleep:g}; echo ...` by one agent process, first claim to last merge)"
    )
    print(
        f"   agents idle {secs(idle_at - launched)} after their launch, import started at "
        f"{secs(start - launched)}; the import took {secs(seconds)}; the last task reached "
        f"done/ {millis(done_dir_mtime - batch.last_merged)} after its merged event; the "
        f"agents used {cpu / span:.0%} of one CPU (of {os.cpu_count()}) meanwhile, other "
        f"processes on the machine {others:.0%} of all CPUs"
    )
    print(f"   {timeline(batch, sleep)}")
    print(f"   exactly once: {'yes' if once else 'NO'} ({detail})")
    for line in problems:
        print(f"   {line}")
    print(
        "   for scale: stigmergy-scheduler 0.1.2 (PyPI) advertises 7.9x over sequential "
        "execution for 100 tasks on 20 agents (real LLM calls)"
    )


# -- 3. idle: wake-up latency and CPU ------------------------------------------------------------


def wake_up(reps: int, wait: float) -> None:
    with (
        temp_repo("agents-wake", files=REPO_FILES) as repo,
        fleet(repo, ["sleeper"], WRITE_FILE, SAFETY_EXIT) as one,
    ):
        one.wait_idle()
        after_exit: list[float] = []
        after_added: list[float] = []
        for k in range(1, reps + 1):
            time.sleep(wait)
            tid = f"wake{k}"
            run([CLI, "task", "add", f"Wake-up probe {k}", "--id", tid], repo)
            added_exit = time.time()
            one.wait_done(k, timeout=30)
            claimed = added = None
            for event in read_events(repo):
                if event.get("task") == tid and event["event"] == events.CLAIMED:
                    claimed = float(event["ts"])
                if event.get("task") == tid and event["event"] == events.TASK_ADDED:
                    added = float(event["ts"])
            if claimed is None or added is None:
                raise BenchError(f"no claimed or task_added event for {tid}")
            after_exit.append(claimed - added_exit)
            after_added.append(claimed - added)
    med = median(after_exit)
    shown = ", ".join(millis(v) for v in after_exit)
    print(
        f"idle wake-up, one agent process idle {wait:g} s, then `task add`: from the add's exit "
        f"to the agent's claim median {millis(med)} {of_bar(med, BAR_WAKE, millis)} over "
        f"{reps} runs [{shown}]; from the task_added event (stamped as the add begins) "
        f"median {millis(median(after_added))}"
    )


def idle_cpu(n_agents: int, window: float) -> None:
    agents = [f"idle{k}" for k in range(1, n_agents + 1)]
    with (
        temp_repo("agents-idle", files=REPO_FILES) as repo,
        fleet(repo, agents, "true", SAFETY_EXIT) as crowd,
    ):
        crowd.wait_idle()
        time.sleep(1.0)
        pids = crowd.pids()
        before = {a: cpu_ticks(p) or 0 for a, p in pids.items()}
        start = time.monotonic()
        time.sleep(window)
        after = {a: cpu_ticks(p) or 0 for a, p in pids.items()}
        elapsed = time.monotonic() - start
        live = crowd.alive()
        problems = crowd.crashed()
    if not live:
        raise BenchError("every idle agent crashed:\n" + "\n".join(problems))
    hz = os.sysconf("SC_CLK_TCK")
    shares = [(after[a] - before[a]) / hz / elapsed * 100 for a in live]
    worst = max(shares)
    print(
        f"idle CPU, {len(live)} agent processes idle for {elapsed:.0f} s: "
        f"{sum(shares) / len(shares):.2f}% of one core per agent on average, worst "
        f"{worst:.2f}% {of_bar(worst, BAR_IDLE_CPU, lambda v: f'{v:g}%')} "
        f"(from /proc/<pid>/stat, {hz} ticks/s: resolution {100 / hz / elapsed:.2f}%)"
    )
    for line in problems:
        print(f"   CRASHED: {line}")


# -- 4. throughput and the integration lock ------------------------------------------------------


class LockSampler(threading.Thread):
    """Looks at a flock every LOCK_SAMPLE seconds: is someone holding it?"""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.samples: list[tuple[float, bool]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(LOCK_SAMPLE):
            self.samples.append((time.time(), is_locked(self.path)))

    def share(self, start: float, end: float) -> tuple[float, int]:
        inside = [held for ts, held in self.samples if start <= ts <= end]
        return (sum(inside) / len(inside) if inside else 0.0), len(inside)


def throughput(n_tasks: int, n_agents: int) -> None:
    agents = [f"p{k}" for k in range(1, n_agents + 1)]
    ids = [task_id(i) for i in range(1, n_tasks + 1)]
    with (
        temp_repo("agents-throughput", files=REPO_FILES, allow_empty=True) as repo,
        fleet(repo, agents, "true", SAFETY_EXIT) as crowd,
    ):
        crowd.wait_idle()
        sampler = LockSampler(Layout(repo).integration_lock)
        sampler.start()
        watch = CpuWatch(crowd.pids().values())
        start, seconds = import_tasks(repo, ids)
        crowd.wait_done(n_tasks, timeout=600)
        span, cpu, others = watch.stop()
        sampler.halt.set()
        sampler.join()
        batch = Batch.read(repo, ids, start, seconds)
        problems = trouble(repo, crowd, ids, batch.merged)
    merged = len(batch.merged_at)
    window = batch.last_merged - batch.first_claim
    held, samples = sampler.share(batch.first_claim, batch.last_merged)
    per_agent = sorted(Counter(str(e["agent"]) for e in batch.merged_at.values()).values())
    cpus = os.cpu_count() or 1
    print(
        f"throughput, {n_agents} agent processes, {count(n_tasks)} tasks of `true`: "
        f"{merged / window:.1f} tasks/s from the first claim to the last merge "
        f"({secs(window)}); {merged / batch.makespan:.1f} tasks/s counting the import "
        f"({secs(seconds)}); tasks per agent {per_agent[0]}-{per_agent[-1]}; "
        f"all merged once: {'NO' if problems else 'yes'}"
    )
    print(
        f"   integration lock held {pct(held)} of that time (sampled from outside every "
        f"{millis(LOCK_SAMPLE)}, {count(samples)} samples); CPU {millis(cpu / merged)} per "
        f"task in the agents and their git/sh children (from /proc/<pid>/stat, from the import "
        f"until all were done): {cpu / (span * cpus):.0%} of the {cpus} CPUs meanwhile; "
        f"other processes on the machine {others:.0%}"
    )
    for line in problems:
        print(f"   {line}")


class TimedLock(FileLock):
    """The integration lock, recording how long each acquire waited and each hold lasted."""

    waits: list[float]
    holds: list[float]

    def __init__(self, path: Path, waits: list[float], holds: list[float]) -> None:
        super().__init__(path)
        self.waits, self.holds = waits, holds
        self._since = 0.0

    def try_acquire(self) -> bool:  # the sweep's way: never waits
        got = super().try_acquire()
        if got:
            self._since = time.perf_counter()
        return got

    def acquire(self, timeout: float | None = None) -> None:
        asked = time.perf_counter()
        super().acquire(timeout)
        self._since = time.perf_counter()
        self.waits.append(self._since - asked)

    def release(self) -> None:
        if self.held:
            super().release()
            self.holds.append(time.perf_counter() - self._since)


def throughput_threads(n_tasks: int, n_agents: int) -> None:
    ids = [task_id(i) for i in range(1, n_tasks + 1)]
    with temp_repo("agents-threads", files=REPO_FILES, allow_empty=True) as repo:
        import_tasks(repo, ids)
        env = open_environment(repo, None, {})
        waits: list[float] = []
        holds: list[float] = []
        failures: list[tuple[str, BaseException]] = []
        agents = [
            Agent(env, AgentOptions(agent=f"t{k}", command="true", idle_exit=0))
            for k in range(1, n_agents + 1)
        ]

        def work(agent: Agent) -> None:
            try:
                agent.run()
            except BaseException as exc:
                failures.append((agent.options.agent, exc))

        def timed(layout: Layout) -> FileLock:
            return TimedLock(layout.integration_lock, waits, holds)

        threads = [threading.Thread(target=work, args=(a,)) for a in agents]
        with patched(locks, "integration_lock", timed):
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - start
        if len(failures) == len(agents):
            raise BenchError(f"every in-process agent failed: {failures[0][1]!r}")
        done = sum(a.summary.done for a in agents)
        left = in_flight(repo)
    print(
        f"   in-process variant, {n_agents} agents as threads of one process, "
        f"{count(n_tasks)} tasks ({done} done, {left} left): {done / wall:.1f} tasks/s; "
        "integration lock "
        f"held {pct(sum(holds) / wall)} of the time ({millis(median(holds))} median hold, "
        f"{len(holds) / n_tasks:.1f} holds per task), waiting for it {millis(median(waits))} "
        f"median, {millis(max(waits))} at worst"
    )
    print(
        "   (GIL caveat: a hold here also counts the time the holding thread waits for the "
        "interpreter while other agents run Python, so this share is an upper bound)"
    )
    for agent, exc in failures:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        print(
            f"   CRASHED: in-process agent {agent}: {exc!r} at "
            f"{Path(where.filename).name}:{where.lineno} ({where.name})"
        )


def parallel_run(quick: bool) -> None:
    """The issue's shape (20 agents, 100 tasks of 2 s), or a smoke-sized one."""
    if quick:
        parallel(n_agents=10, n_tasks=20, sleep=1.0, settle=1.0, base=5)
    else:
        parallel(n_agents=20, n_tasks=100, sleep=2.0, settle=1.0, base=10)


def _runs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of runs (1 or more), not {text!r}")
    return int(text)


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parallel",
        type=_runs,
        metavar="N",
        help="run only the parallel-efficiency section, N times in a row, each after the CPU "
        "speed probe: its figure follows the machine from one minute to the next",
    )
    parser.add_argument(
        "--overhead",
        type=_runs,
        metavar="N",
        help="run only the per-task overhead section, N times in a row, each after the probes",
    )


def body() -> None:
    args = parse_args(__doc__ or "", _options)
    quick: bool = args.quick
    header("agent loop: overhead, parallel efficiency, idle, throughput", quick)
    if args.overhead:
        for run_number in range(1, args.overhead + 1):
            print(f"-- overhead run {run_number} of {args.overhead}; {cpu_speed()}; {file_speed()}")
            per_task_overhead(30 if quick else 200)
        return
    if args.parallel:
        for run_number in range(1, args.parallel + 1):
            print(f"-- parallel run {run_number} of {args.parallel}; {cpu_speed()}; {file_speed()}")
            parallel_run(quick)
        return
    if quick:
        per_task_overhead(30)
        parallel_run(quick)
        wake_up(reps=3, wait=1.0)
        idle_cpu(n_agents=5, window=3.0)
        throughput(n_tasks=120, n_agents=8)
        throughput_threads(n_tasks=60, n_agents=8)
    else:
        per_task_overhead(200)
        parallel_run(quick)
        wake_up(reps=5, wait=2.0)
        idle_cpu(n_agents=5, window=10.0)
        throughput(n_tasks=1_000, n_agents=8)
        throughput_threads(n_tasks=200, n_agents=8)


if __name__ == "__main__":
    main_guard(body)
