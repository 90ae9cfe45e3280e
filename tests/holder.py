"""A claim holder for fault tests: claims a task as an agent process would, then obeys stdin.

Run as `python tests/holder.py ROOT AGENT TASK`; prints one JSON line per step.
"land-and-die" commits a change and merges it, and the process kills itself with SIGKILL the
moment the target has moved (before the task is recorded as done): a crash at the worst
instant of a merge. "record-and-die" does the same a step later, once the outcome is in the
task's file and before the task moves to done/. "conflict-and-die" has the target change the
same file first, and dies once the conflict task exists, before the task says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stigmergy_cli import claims, merge, results
from stigmergy_cli.environment import open_environment
from stigmergy_cli.errors import StigmergyError
from stigmergy_cli.heartbeats import Heartbeat, Heartbeater
from stigmergy_cli.store import TaskStore


def main() -> None:
    root, agent, task_id = sys.argv[1:4]
    env = open_environment(Path(root), None, {})
    beat = Heartbeat.new(agent, role=None, now=time.time())
    heart = Heartbeater(
        env.layout, beat, interval=env.config.heartbeat_interval, lease=env.config.lease
    )
    heart.start()
    claimed = claims.claim_named(env.store, env.config, agent, task_id, role=None, now=time.time())
    heart.beat(task=task_id, status="working")
    print(json.dumps({"token": claimed.token}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "lost":
            print(json.dumps({"lost": heart.lost}), flush=True)
            continue
        try:
            if command == "release":
                claims.release(
                    env.store, env.config, agent, task_id, token=claimed.token, now=time.time()
                )
            elif command == "fail":
                claims.fail(
                    env.store,
                    env.config,
                    agent,
                    task_id,
                    token=claimed.token,
                    reason="x",
                    now=time.time(),
                )
            elif command == "complete":
                with claims.owned(env.store, task_id, agent, claimed.token):
                    pass
            elif command in ("land-and-die", "record-and-die", "conflict-and-die"):
                task = claimed.record.task
                worktree = results.prepare(env.layout, env.config, agent, task, time.time())
                (worktree / f"{task_id}.txt").write_text("work\n")
                commit = results.commit(env.layout, env.config, worktree, task, agent)
                die = lambda *_, **__: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731
                if command == "conflict-and-die":  # someone else's change to the same file
                    (Path(root) / f"{task_id}.txt").write_text("theirs\n")
                    git = ["git", "-C", root, "-c", "user.name=o", "-c", "user.email=o@o"]
                    subprocess.run([*git, "add", f"{task_id}.txt"], check=True)
                    subprocess.run([*git, "commit", "-q", "-m", "theirs"], check=True)
                if command != "record-and-die":  # the moment the target has it, or its conflict
                    merge._finish = die
                else:  # the moment the task's file has the outcome
                    TaskStore.move = die  # type: ignore[method-assign,assignment]
                merge.integrate(
                    env.store,
                    env.config,
                    task_id=task_id,
                    agent=agent,
                    token=claimed.token,
                    result=commit,
                    now=time.time(),
                )
        except StigmergyError as exc:
            print(json.dumps({"refused": command, "error": str(exc)}), flush=True)
        else:
            print(json.dumps({"ok": command}), flush=True)


if __name__ == "__main__":
    main()
