"""Agents killed with SIGKILL at random moments, over and over, while they work a pool.

Whatever instant a kill lands on (claiming, preparing the worktree, running the executor,
committing, merging, recording), the sweep and the agents that follow must finish the work:
every task done once, its change on the target once, no claim left behind, and the user's
checkout clean. Some tasks append to one shared file, so their merges conflict and the
conflicts are resolved (by agents that are killed too). Kill points are random, so each run
tries others; the seed only fixes which agent dies and when, not what it was doing.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from stigmergy_cli import events, locks, tasks
from stigmergy_cli.environment import open_environment
from stigmergy_cli.sweep import sweep

from .conftest import git
from .test_agent_loop import STIGMERGY

TASKS = 40
SHARED = 8  # of them, the ones that append to one file, so that their merges conflict
AGENTS = 3
KILLS = int(os.environ.get("STIGMERGY_CRASH_KILLS", "24"))
# A short random pause, so that kills land anywhere in a task, not only in its executor.
# A conflict is resolved by keeping both sides (the file is a list of ids).
EXECUTOR = """sleep "0.0$(($(od -An -N1 -tu1 /dev/urandom) % 6))"
case "$STIGMERGY_TASK_ID" in
  *.conflict) for f in $(git diff --name-only --diff-filter=U); do
      grep -v -e '^<<<<<<< ' -e '^=======$' -e '^>>>>>>> ' "$f" > "$f.new"; mv "$f.new" "$f"
    done ;;
  s*) printf "%s\\n" "$STIGMERGY_TASK_ID" >> shared.txt ;;
  *) printf "%s\\n" "$STIGMERGY_TASK_ID" > "$STIGMERGY_TASK_ID.txt" ;;
esac"""


class Fleet:
    """Agent processes under test, each restartable under its id."""

    def __init__(self, root: Path, logs: Path) -> None:
        self.root = root
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0

    def start(self, agent: str, *extra: str) -> None:
        self.started += 1
        log = (self.logs / f"{agent}-{self.started}.log").open("wb")
        self.procs[agent] = subprocess.Popen(
            [str(STIGMERGY), "agent", "run", "--id", agent, "--exec", EXECUTOR, "-q", *extra],
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, with the git it runs
        )
        log.close()

    def kill(self, agent: str, *, group: bool = False) -> None:
        """SIGKILL the agent, or with `group` its git processes too (a closed terminal, a
        stopped container), which leaves git's own lock files behind."""
        proc = self.procs[agent]
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def finish(self, timeout: float) -> list[int | None]:
        codes: list[int | None] = []
        for proc in self.procs.values():
            try:
                codes.append(proc.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(None)
        return codes

    def log_tail(self) -> str:
        return "\n".join(p.read_text()[-2000:] for p in sorted(self.logs.iterdir()))


@pytest.mark.slow
@pytest.mark.parametrize("group", [False, True], ids=["agent", "with-its-git"])
def test_agents_killed_at_random_instants_still_land_every_task_exactly_once(
    env_root: Path, tmp_path: Path, group: bool
) -> None:
    config = env_root / ".stigmergy" / "config.yaml"
    # Every kill costs its task an attempt: allow plenty, so none fails for good.
    config.write_text(config.read_text().replace("  max_attempts: 3", "  max_attempts: 100", 1))
    env = open_environment(env_root, None, {})
    ids = [f"s{n:02d}" if n < SHARED else f"t{n:02d}" for n in range(TASKS)]
    for task_id in ids:
        # The shared ones first, so that the agents' first tasks run side by side from one
        # tip and their merges conflict, whatever the kills do to the order after that.
        doc = {"id": task_id, "title": f"Task {task_id}", "priority": 90 if task_id < "t" else 50}
        env.store.add(tasks.new_task(doc, now=time.time(), created_by="t"), time.time())
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(env_root, logs)
    names = [f"a{n}" for n in range(AGENTS)]
    for name in names:
        fleet.start(name)
    rng = random.Random(5)
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.02, 0.35))
        victim = rng.choice(names)
        fleet.kill(victim, group=group)
        # What cron would do; on the same host a dead holder's claim is seen at once.
        sweep(env.store, env.config, time.time())
        fleet.start(victim)
    for name in names:  # the last round: nobody dies, everybody leaves once idle
        fleet.kill(name)
        fleet.start(name, "--idle-exit", "2")
        sweep(env.store, env.config, time.time())
    codes = fleet.finish(timeout=300)
    assert codes == [0] * AGENTS, fleet.log_tail()
    sweep(env.store, env.config, time.time())
    if group:
        # git killed in the user's checkout, mid fast-forward, leaves its lock files there,
        # and files it had written but not yet recorded in the index: changed, or new and
        # untracked. Merges wait (their tasks done, 'deferred') until the user, told why,
        # puts the checkout back as git left it before.
        git_dir = env_root / ".git"
        for lock in [*git_dir.glob("*.lock"), *(git_dir / "refs" / "heads").glob("*.lock")]:
            lock.unlink()
        git(env_root, "reset", "-q", "--hard")
        untracked = git(env_root, "ls-files", "--others", "--exclude-standard", "--", "*.txt")
        for name in untracked.split():
            (env_root / name).unlink()
        subprocess.run([str(STIGMERGY), "integrate"], cwd=env_root, check=True)
        for name in names:  # what those merges met is conflict tasks, for the agents again
            fleet.start(name, "--idle-exit", "2")
        assert fleet.finish(timeout=300) == [0] * AGENTS, fleet.log_tail()

    records = {r.task.id: r for r in env.store.scan(time.time()).records}
    resolutions = sorted(t for t in records if t.endswith(".conflict"))
    assert sorted(set(records) - set(resolutions)) == ids
    unfinished = {t: (r.state, r.task.result) for t, r in records.items() if r.state != "done"}
    assert unfinished == {}, fleet.log_tail()
    assert all((records[t].task.result or {}).get("merged") is True for t in ids)
    # Each task's work is on the target once: one result commit, its change in the tree.
    trailers = git(env_root, "log", "--format=%(trailers:key=Stigmergy-Task,valueonly)", "main")
    assert sorted(trailers.split()) == sorted(ids + resolutions)
    for task_id in ids[SHARED:]:
        assert (env_root / f"{task_id}.txt").read_text() == f"{task_id}\n"
    assert sorted((env_root / "shared.txt").read_text().split()) == ids[:SHARED]
    # No claim outlives the run, and the user's checkout moved only as git moves it.
    assert list(locks.list_locks(env.layout)) == []
    assert git(env_root, "status", "--porcelain", "--untracked-files=no") == ""
    merged = [e for e in events.read(env.layout.events) if e["event"] == events.MERGED]
    assert all(sum(e["task"] == t for e in merged) <= 1 for t in records)
    # Only kills cost attempts (a kill between two tasks costs none).
    assert sum(r.task.attempts for r in records.values()) <= KILLS + AGENTS
    assert resolutions, "no merge conflicted: the test lost its point"
