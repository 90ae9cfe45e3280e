"""Run a pool of tasks through stigmergy's Python API, with an async dispatcher.

    python examples/api_scheduler.py

Creates a scratch git repository, initializes stigmergy there, adds tasks with dependencies
and an urgent one, and runs eight in-process agents until the pool is empty. Your dispatcher
would call a model or a tool; this one sleeps a little and upper-cases the description.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from pathlib import Path

from stigmergy_cli.api import DispatchResult, Scheduler, TaskSpec, open_environment
from stigmergy_cli.environment import initialize


async def dispatch(agent_id: str, task: TaskSpec) -> DispatchResult:
    await asyncio.sleep(0.2)
    print(f"{agent_id:>10} did {task.id}")
    return DispatchResult(success=True, output=task.description.upper())


async def main(root: Path) -> None:
    env = open_environment(root)
    scheduler = Scheduler(env, agents=8, tick_interval=0.05)
    scheduler.set_dispatcher(dispatch)
    await scheduler.add_tasks(
        [TaskSpec(id=f"chapter-{n}", description=f"Draft chapter {n}") for n in range(1, 9)]
        + [
            TaskSpec(
                id="edit",
                description="Edit the book",
                dependencies=[f"chapter-{n}" for n in range(1, 9)],
            )
        ]
    )
    await scheduler.inject_urgent(TaskSpec(id="cover", description="Fix the typo on the cover"))
    metrics = await scheduler.run()
    print(f"{metrics.total_completions} tasks done, {metrics.total_failures} failed")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        repo = Path(scratch)
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        subprocess.run(
            [
                "git",
                "-c",
                "user.name=demo",
                "-c",
                "user.email=demo@example.com",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "start",
            ],
            cwd=repo,
            check=True,
        )
        initialize(repo, None, {})
        asyncio.run(main(repo))
