"""Scoring and claiming over 10,000 tasks with 100,000 signals, and evaporating half of them.

Set-up: one `task import` of 10,000 generated tasks (varied priorities; some labels and roles;
every third depends on the one before), all pending. Then 100,000 signals written straight into
.stigmergy/signals.jsonl, in the format `signals.Field.deposit` writes (checked against it on one
signal; 100,000 deposits would each take the store's flock). 95% target tasks (`task:<id>`,
about ten per task), 5% agents and roles; their `at` is spread uniformly over the last hour and
their intensities are those of stigmergy's own kinds (skip 0.05 ... boost 0.25, a few urgent
1.0) plus a negative one, so none fades below epsilon within the hour.

In-process, each the median of a few calls: (a) `Field.pressures(now)`, one pass over the store,
split into reading the file, json.loads, building Signal objects, and decaying and summing;
(b) scoring the whole pool as `task list` does (`store.scan` of every state, the pressures,
`pool.build`); (c) one `claims.claim_best` (its pending scan timed from inside it). Then whole
processes: `task list --json` and `task claim --agent x --json`, taking turns with runs whose
signals.jsonl is moved aside, so the difference is what the signals cost a process. Last, half
the signals are made a month old and `stigmergy decay --json` evaporates them (the file restored
before each run); in-process `Field.evaporate` on that file and on as many fresh signals
(nothing to drop) says how much of it is reading and how much writing the kept half back.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from _common import (
    CACHE_SETTLE,
    CLI,
    count,
    header,
    import_yaml,
    main_guard,
    median,
    millis,
    of_bar,
    parse_args,
    run,
    secs,
    temp_repo,
)

from stigmergy_cli import claims, pool, signals
from stigmergy_cli.environment import Environment, open_environment
from stigmergy_cli.paths import STATES
from stigmergy_cli.store import Scan, TaskStore

BAR = 1.0  # seconds: scoring or claiming over 10,000 tasks with 100,000 signals
HOUR = 3600.0
OLD = 30 * 24 * HOUR  # "far in the past": a month, thousands of half-lives at the default 1800 s

# (kind, intensity) of the signals on tasks, drawn uniformly; urgent is drawn separately.
_TASK_KINDS: tuple[tuple[str, float], ...] = (
    (signals.SKIP, 0.05),
    (signals.FAILURE, 0.1),
    (signals.DEPENDENCY_DONE, 0.05),
    (signals.BOOST, 0.25),
    (signals.CONFLICT, 0.2),
    ("cooldown", -0.1),
)
_OTHER_TARGETS = (
    *(f"agent:a{k}" for k in range(10)),
    "agent:x",
    "agent:bench",
    "role:reviewer",
    "role:builder",
)


def signal_line(kind: str, intensity: float, target: str, at: float, sid: str) -> str:
    """One line of signals.jsonl: the keys and separators of Field.deposit."""
    doc = {
        "kind": kind,
        "intensity": intensity,
        "target": target,
        "at": at,
        "agent": None,
        "meta": {},
        "id": sid,
    }
    return json.dumps(doc, separators=(",", ":")) + "\n"


def check_format() -> None:
    """Fail loudly if Field.deposit's line format has drifted from signal_line's."""
    sig = signals.Signal("boost", 0.25, "task:t00001", 1.5e9, id="0123456789ab")
    theirs = json.dumps(asdict(sig), separators=(",", ":"), default=str) + "\n"
    ours = signal_line("boost", 0.25, "task:t00001", 1.5e9, "0123456789ab")
    if ours != theirs:
        raise SystemExit(f"signals.jsonl format changed:\n deposit: {theirs} here:    {ours}")


Row = tuple[str, float, str, float, str]  # kind, intensity, target, at, id


def make_signals(n: int, task_ids: list[str], now: float) -> list[Row]:
    """`n` signals: 95% on tasks, 5% on agents and roles, `at` over the last hour."""
    rng = random.Random(20240601)
    rows: list[Row] = []
    for _ in range(n):
        sid = f"{rng.getrandbits(48):012x}"
        at = now - rng.uniform(0.0, HOUR)
        roll = rng.random()
        if roll < 0.05:
            rows.append(("nudge", 0.1, rng.choice(_OTHER_TARGETS), at, sid))
        elif roll < 0.051:
            rows.append((signals.URGENT, 1.0, f"task:{rng.choice(task_ids)}", at, sid))
        else:
            kind, intensity = rng.choice(_TASK_KINDS)
            rows.append((kind, intensity, f"task:{rng.choice(task_ids)}", at, sid))
    return rows


def store_bytes(rows: list[Row], *, age_every_other: float = 0.0) -> bytes:
    """signals.jsonl holding `rows`; every other one `age_every_other` seconds older."""
    return "".join(
        signal_line(kind, intensity, target, at - (age_every_other if k % 2 else 0.0), sid)
        for k, (kind, intensity, target, at, sid) in enumerate(rows)
    ).encode()


class TimedStore(TaskStore):
    """A TaskStore that remembers how long its last scan took (claim_best's scan, timed)."""

    last_scan = 0.0

    def scan(self, now: float, states: Sequence[str] = STATES) -> Scan:
        start = time.perf_counter()
        found = super().scan(now, states)
        self.last_scan = time.perf_counter() - start
        return found


def timed(fn: Callable[[], object], runs: int) -> float:
    """The median wall time of `runs` calls of `fn`."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def share(part: float, whole: float) -> str:
    return f"{millis(part)} ({part / whole:.0%})"


# -- (a) the field, (b) the pool, (c) a claim ----------------------------------------------


def pressures_in_process(env: Environment, runs: int, n_signals: int) -> float:
    field = signals.Field(env.layout, env.config.pressure)
    path = field.path

    def read() -> None:
        path.read_bytes().splitlines()

    def parse() -> None:
        for raw in path.read_bytes().splitlines():
            json.loads(raw)

    def build() -> None:
        deque(field.all(), maxlen=0)  # streamed and dropped, as pressures() does

    t_read = timed(read, runs)
    t_parse = timed(parse, runs)
    t_all = timed(build, runs)
    t_press = timed(lambda: field.pressures(time.time()), runs)
    targets = len(field.pressures(time.time()))
    print(
        f"(a) Field.pressures(now), {count(n_signals)} signals on {count(targets)} targets: "
        f"median {secs(t_press)} {of_bar(t_press, BAR, secs)} over {runs}; "
        f"{millis(t_press / n_signals * 1000)} per 1,000 signals"
    )
    print(
        f"   where the time goes: reading and splitting the file {share(t_read, t_press)}, "
        f"json.loads {share(max(t_parse - t_read, 0.0), t_press)}, building Signal objects "
        f"{share(max(t_all - t_parse, 0.0), t_press)}, decaying and summing "
        f"{share(max(t_press - t_all, 0.0), t_press)} (each part the difference of two "
        "medians)"
    )
    return t_press


def pool_in_process(env: Environment, runs: int, t_press: float) -> None:
    store, cfg = env.store, env.config.pressure
    field = signals.Field(env.layout, cfg)

    def whole() -> None:
        now = time.time()
        pool.build(store.scan(now).records, now, cfg, field.pressures(now))

    t_whole = timed(whole, runs)
    t_scan = timed(lambda: store.scan(time.time()), runs)
    now = time.time()
    records = store.scan(now).records
    pressures = field.pressures(now)
    t_build = timed(lambda: pool.build(records, now, cfg, pressures), runs)
    entries = pool.build(records, now, cfg, pressures)
    pushed = sum(1 for e in entries if e.pressure)
    print(
        f"(b) scoring the whole pool (scan, pressures, pool.build), {count(len(records))} tasks: "
        f"median {secs(t_whole)} {of_bar(t_whole, BAR, secs)} over {runs}; "
        f"{count(pushed)} tasks under pressure, {sum(e.ready for e in entries):,} ready"
    )
    print(
        f"   where the time goes: store.scan of every state (list cache warm) "
        f"{share(t_scan, t_whole)}, Field.pressures {share(t_press, t_whole)}, "
        f"pool.build {share(t_build, t_whole)}"
    )


def claim_in_process(env: Environment, runs: int, t_press: float) -> None:
    store = TimedStore(env.layout)
    times: list[float] = []
    scans: list[float] = []
    won: list[str] = []
    for _ in range(runs):
        start = time.perf_counter()
        claimed = claims.claim_best(store, env.config, "bench", role=None, now=time.time())
        times.append(time.perf_counter() - start)
        claimed.claim.close()
        scans.append(store.last_scan)
        won.append(claimed.record.task.id)
    t_claim, t_scan = median(times), median(scans)
    print(
        f"(c) claims.claim_best, one claim: median {secs(t_claim)} "
        f"{of_bar(t_claim, BAR, secs)} over {runs} [{secs(min(times))}-{secs(max(times))}]; "
        f"won {', '.join(won)}"
    )
    rest = max(t_claim - t_scan - t_press, 0.0)
    print(
        f"   where the time goes: scanning pending/ {share(t_scan, t_claim)}, "
        f"Field.pressures {share(t_press, t_claim)} (median of (a)), scoring, ranking and "
        f"taking the lock {share(rest, t_claim)}"
    )


# -- (d) whole processes ------------------------------------------------------------------


def processes(repo: Path, signals_path: Path, runs: int, n_signals: int, t_press: float) -> None:
    aside = signals_path.with_name("signals.jsonl.aside")
    argvs: dict[str, list[str | Path]] = {
        "task list --json": [CLI, "task", "list", "--json"],
        "task claim --agent x --json": [CLI, "task", "claim", "--agent", "x", "--json"],
    }
    # Untimed: bytecode, list caches, and agent x's worktree (made by its first claim only).
    for argv in argvs.values():
        run(argv, repo)
    time.sleep(CACHE_SETTLE)
    for label, argv in argvs.items():
        with_signals: list[float] = []
        without: list[float] = []
        for _ in range(runs):  # taking turns, so both see the same machine load
            with_signals.append(run(argv, repo).seconds)
            os.rename(signals_path, aside)
            try:
                without.append(run(argv, repo).seconds)
            finally:
                os.rename(aside, signals_path)
        med, bare = median(with_signals), median(without)
        print(
            f"(d) {label}, whole process with {count(n_signals)} signals: median {secs(med)} "
            f"{of_bar(med, BAR, secs)} over {runs}; without signals.jsonl {secs(bare)}: "
            f"the signals cost {millis(med - bare)} ({(med - bare) / med:.0%} of the process, "
            f"about {(med - bare) / t_press:.1f} Field.pressures passes at the rate of (a))"
        )


# -- evaporation ----------------------------------------------------------------------------


def evaporation(env: Environment, repo: Path, rows: list[Row], runs: int) -> None:
    """Half the signals a month older, then `decay --json` (file restored before each run);
    then the same number of signals, all fresh, which `decay` reads and leaves as they are."""
    aged = store_bytes(rows, age_every_other=OLD)
    fresh = store_bytes(rows)
    path = env.layout.signals
    field = signals.Field(env.layout, env.config.pressure)
    times: list[float] = []
    report: dict[str, int] = {}
    for _ in range(runs):
        path.write_bytes(aged)
        done = run([CLI, "decay", "--json"], repo, capture=True)
        times.append(done.seconds)
        report = json.loads(done.stdout)
    kept_mb = path.stat().st_size / 2**20
    in_process: list[float] = []
    for _ in range(runs):
        path.write_bytes(aged)
        start = time.perf_counter()
        field.evaporate(time.time())
        in_process.append(time.perf_counter() - start)
    path.write_bytes(fresh)
    idle = timed(lambda: field.evaporate(time.time()), runs)
    idle_process = median([run([CLI, "decay", "--json"], repo).seconds for _ in range(runs)])
    med, evaporate = median(times), median(in_process)
    print(
        f"decay --json, {count(len(rows))} signals ({len(aged) / 2**20:.1f} MB), every other "
        f"one {OLD / 86400:.0f} days old: median {secs(med)} {of_bar(med, BAR, secs)} over "
        f"{runs}; evaporated {count(report.get('evaporated', 0))}, kept "
        f"{count(report.get('kept', 0))} ({kept_mb:.1f} MB left)"
    )
    print(
        f"   where the time goes: Field.evaporate in-process {secs(evaporate)}, of which "
        f"reading and judging every line {share(idle, evaporate)} (evaporate of as many fresh "
        f"signals, nothing to drop) and writing the kept half back "
        f"{share(max(evaporate - idle, 0.0), evaporate)}; the process around it "
        f"{millis(med - evaporate)}. decay --json with nothing to drop: {secs(idle_process)}"
    )


def body() -> None:
    args = parse_args(__doc__ or "")
    quick: bool = args.quick
    n_tasks, n_signals, runs = (1_000, 10_000, 3) if quick else (10_000, 100_000, 5)
    header(f"pressure: {count(n_tasks)} tasks, {count(n_signals)} signals", quick)
    check_format()
    with temp_repo("pressure") as repo:
        source = repo.parent / "tasks.yaml"
        source.write_text(import_yaml(n_tasks))
        imported = run([CLI, "task", "import", source], repo).seconds
        env = open_environment(repo, None, {})
        ids = [r.task.id for r in env.store.scan(time.time(), states=("pending",)).records]
        start = time.perf_counter()
        now = time.time()
        rows = make_signals(n_signals, ids, now)
        env.layout.signals.write_bytes(store_bytes(rows))
        written = time.perf_counter() - start
        print(
            f"set-up: task import of {count(len(ids))} pending tasks {secs(imported)}; "
            f"{count(n_signals)} signals generated and written "
            f"({env.layout.signals.stat().st_size / 2**20:.1f} MB) {secs(written)}"
        )
        time.sleep(CACHE_SETTLE)
        env.store.scan(time.time())  # the list cache of every state, as earlier listings left it
        print()
        t_press = pressures_in_process(env, runs, n_signals)
        pool_in_process(env, runs, t_press)
        claim_in_process(env, runs, t_press)
        processes(repo, env.layout.signals, runs, n_signals, t_press)
        print()
        evaporation(env, repo, rows, runs)


if __name__ == "__main__":
    main_guard(body)
