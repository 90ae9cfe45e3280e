"""`stigmergy demo`: the whole loop on the built-in sample project, with no model needed.

Creates a git repository holding the skeleton of a small package, fills the pool with its
tasks, starts N real `stigmergy agent run` processes whose executor is the scripted
demo_executor, and reports what happened from the event log.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stigmergy_cli import events, gitops, tasks
from stigmergy_cli.demo_project import PIECES, SKELETON
from stigmergy_cli.environment import Environment, initialize, open_environment

TIME_LIMIT = 300.0  # seconds before the demo gives up waiting for its agents


@dataclass
class DemoReport:
    root: str
    agents: int
    tasks: int
    done: int
    failed: int
    merges: int
    conflicts: int
    resolved: int
    makespan: float
    work_seconds: float
    speedup: float
    tests_passed: bool
    tests_summary: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def create(root: Path, python: str, now: float) -> Environment:
    """Write the sample project, commit it, initialize stigmergy and import its tasks."""
    root.mkdir(parents=True, exist_ok=True)
    gitops.run(["init", "--quiet", "--initial-branch=main"], root)
    for name, text in {**SKELETON, ".gitignore": "__pycache__/\n"}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    gitops.run(["add", "-A"], root)
    ident = ["-c", "user.name=stigmergy demo", "-c", "user.email=demo@stigmergy.invalid"]
    gitops.run([*ident, "commit", "--quiet", "-m", "Skeleton of the stats package"], root)
    gitops.run(["config", "user.name", "stigmergy demo"], root)
    gitops.run(["config", "user.email", "demo@stigmergy.invalid"], root)
    initialize(root, "main", {})
    env = open_environment(root, None, {})
    batch = []
    for piece in PIECES:
        verify = None
        if piece.verify_module:
            verify = f"{shlex.quote(python)} -m unittest -q {piece.verify_module}"
        elif piece.verify_grep:
            verify = f"grep -q {shlex.quote(piece.verify_grep)} README.md"
        doc = {
            "id": piece.task_id,
            "title": piece.title,
            "priority": piece.priority,
            "depends_on": list(piece.depends_on),
            "verify": verify,
            "labels": ["demo"],
        }
        batch.append(tasks.new_task(doc, now=now, created_by="demo"))
    env.store.import_tasks(batch, now)
    return env


def start_agents(
    root: Path, count: int, python: str, think: float
) -> list[subprocess.Popen[bytes]]:
    """Start `count` agent processes, each in its own session, output to the logs only."""
    executor = f"{shlex.quote(python)} -m stigmergy_cli.demo_executor"
    env = {**os.environ, "STIGMERGY_DEMO_THINK": str(think), "PYTHONDONTWRITEBYTECODE": "1"}
    return [
        subprocess.Popen(
            [
                python,
                "-m",
                "stigmergy_cli",
                "agent",
                "run",
                "--id",
                f"agent-{n + 1}",
                "--exec",
                executor,
                "--idle-exit",
                "60",
                "--quiet",
            ],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for n in range(count)
    ]


def finished(env: Environment, now: float) -> bool:
    """Nothing left to do: no task pending or active."""
    states = {r.state for r in env.store.scan(now, states=("pending", "active")).records}
    return not states


def run_until_done(
    env: Environment,
    agents: list[subprocess.Popen[bytes]],
    *,
    on_tick: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Wait for the pool to empty (or the agents to exit), then stop the agents cleanly."""
    deadline = time.monotonic() + TIME_LIMIT
    try:
        while time.monotonic() < deadline:
            if on_tick is not None:
                on_tick()
            if finished(env, clock()) or all(a.poll() is not None for a in agents):
                break
            time.sleep(0.25)
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
        for agent in agents:
            try:
                agent.wait(timeout=20)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()


def report(env: Environment, agents: int, python: str) -> DemoReport:
    """What the run did, read from the event log, and whether the package's tests pass."""
    log = list(events.read(env.layout.events))
    started: dict[str, float] = {}
    work = 0.0
    first = last = None
    for event in log:
        kind, task, ts = event["event"], event.get("task"), float(event["ts"])
        if kind == events.CLAIMED:
            first = ts if first is None else min(first, ts)
        if kind == events.STARTED and isinstance(task, str):
            started[task] = ts
        if kind in (events.MERGED, events.CONFLICT, events.FAILED) and task in started:
            work += ts - started.pop(str(task))
            last = ts
    records = env.store.scan(time.time()).records
    conflict_tasks = [r for r in records if r.task.type == "merge_conflict"]
    makespan = (last - first) if first is not None and last is not None else 0.0
    tests = subprocess.run(
        [python, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
        cwd=env.layout.root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    summary = (tests.stderr.strip().splitlines() or ["no output"])[-1]
    ran = [line for line in tests.stderr.splitlines() if line.startswith("Ran ")]
    return DemoReport(
        root=str(env.layout.root),
        agents=agents,
        tasks=len(records),
        done=sum(1 for r in records if r.state == "done"),
        failed=sum(1 for r in records if r.state == "failed"),
        merges=sum(1 for e in log if e["event"] == events.MERGED and "via" not in e),
        conflicts=len(conflict_tasks),
        resolved=sum(1 for r in conflict_tasks if r.state == "done"),
        makespan=round(makespan, 2),
        work_seconds=round(work, 2),
        speedup=round(work / makespan, 2) if makespan else 0.0,
        tests_passed=tests.returncode == 0,
        tests_summary=(ran[0] + ", " if ran else "") + summary,
    )


def python_executable() -> str:
    """The interpreter running stigmergy, so the agents and tests use the same one."""
    return sys.executable
