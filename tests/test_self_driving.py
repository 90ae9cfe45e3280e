"""Agents that drive themselves through the CLI: claim, work in the worktree, done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stigmergy_cli.oslock import FileLock
from stigmergy_cli.paths import Layout

from .conftest import Cli, git

STIGMERGY = Path(sys.executable).parent / "stigmergy"

# A scripted "interactive agent": only CLI calls, as an LLM session would make them.
SESSION = """
import json, subprocess, sys
from pathlib import Path
exe, agent = sys.argv[1], sys.argv[2]
def cli(*args):
    return subprocess.run([exe, *args], capture_output=True, text=True)
while True:
    claimed = cli("task", "claim", "--agent", agent, "--json")
    if claimed.returncode != 0:
        break
    task = json.loads(claimed.stdout)
    worktree = Path(task["worktree"])
    (worktree / f"{task['id']}.txt").write_text(f"{task['id']} by {agent}\\n")
    done = cli("task", "done", task["id"], "--agent", agent)
    print(task["id"], done.returncode, done.stdout.strip(), done.stderr.strip(), flush=True)
"""


def test_claim_work_done(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "Write a file", "--id", "t", "--verify", "test -f t.txt")
    claimed = json.loads(cli("task", "claim", "--agent", "alpha", "--json").out)
    worktree = Path(claimed["worktree"])
    assert worktree == in_repo / ".stigmergy" / "workspaces" / "alpha"
    assert git(worktree, "rev-parse", "HEAD") == git(in_repo, "rev-parse", "main")
    failed_verify = cli("task", "done", "t", "--agent", "alpha")
    assert failed_verify.code == 1
    assert "verify failed (exit 1)" in failed_verify.err
    assert "the task is still yours" in failed_verify.err
    (worktree / "t.txt").write_text("done\n")
    stranger = cli("task", "done", "t", "--agent", "beta")
    assert stranger.code == 1
    assert "claimed by agent 'alpha', not 'beta'" in stranger.err
    done = cli("task", "done", "t", "--agent", "alpha")
    assert done.code == 0, done.err
    assert done.out.startswith("t merged into main")
    assert (in_repo / "t.txt").read_text() == "done\n"
    assert json.loads(cli("task", "show", "t", "--json").out)["status"] == "done"
    assert cli("agent", "workspace", "--id", "alpha").out.strip() == str(worktree)


def test_two_sessions_finish_a_pool_with_every_result_once(in_repo: Path) -> None:
    count = 24
    batch = "".join(f"- {{id: s{n:02d}, title: Session task {n}}}\n" for n in range(count))
    (in_repo / "batch.yaml").write_text(batch)
    subprocess.run([str(STIGMERGY), "task", "import", "batch.yaml"], cwd=in_repo, check=True)
    (in_repo / "batch.yaml").unlink()
    sessions = [
        subprocess.Popen(
            [sys.executable, "-c", SESSION, str(STIGMERGY), name],
            cwd=in_repo,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("claude-1", "codex-1")
    ]
    reports = [s.communicate(timeout=300)[0].splitlines() for s in sessions]
    outcomes = [line.split(" ", 2) for report in reports for line in report]
    assert sorted(task for task, _code, _rest in outcomes) == [f"s{n:02d}" for n in range(count)]
    assert all(code == "0" for _task, code, _rest in outcomes)
    trailers = git(
        in_repo, "log", "--format=%(trailers:key=Stigmergy-Task,valueonly)", "main"
    ).split()
    assert sorted(trailers) == [f"s{n:02d}" for n in range(count)]
    assert all(reports), "both sessions did some of the work"


def test_prune_removes_gone_agents_and_keeps_their_work(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "T", "--id", "t")
    claimed = json.loads(cli("task", "claim", "--agent", "ghost", "--json").out)
    worktree = Path(claimed["worktree"])
    (worktree / "unmerged.txt").write_text("precious\n")
    assert "ghost: kept" in cli("agent", "prune").out  # holds a claim
    assert cli("task", "release", "t", "--agent", "ghost").code == 0
    heartbeat = in_repo / ".stigmergy" / "agents" / "ghost.json"
    beat = json.loads(heartbeat.read_text())
    beat["last_seen"] -= 10 * 3600
    heartbeat.write_text(json.dumps(beat))
    running = FileLock(Layout(in_repo).agent_lock("ghost"))  # an `agent run` of that name
    running.acquire()
    try:
        assert "ghost: kept" in cli("agent", "prune").out  # silent, but its process is alive
    finally:
        running.release()
    assert "would remove" in cli("agent", "prune", "--dry-run").out
    assert worktree.exists()
    pruned = cli("agent", "prune")
    assert (
        "ghost: removed; unmerged work kept at refs/stigmergy/attempts/ghost/pruned/" in pruned.out
    )
    assert not worktree.exists()
    ref = pruned.out.split("kept at ")[1].strip()
    assert git(in_repo, "show", f"{ref}:unmerged.txt") == "precious"
    assert "stigmergy/ghost" not in git(in_repo, "branch", "--list")


def test_integrate_finishes_a_deferred_merge(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "Edit the readme", "--id", "t")
    claimed = json.loads(cli("task", "claim", "--agent", "alpha", "--json").out)
    (Path(claimed["worktree"]) / "README.md").write_text("from the agent\n")
    (in_repo / "README.md").write_text("my own unsaved edit\n")
    deferred = cli("task", "done", "t", "--agent", "alpha")
    assert deferred.code == 0
    assert "merge deferred" in deferred.out
    assert (in_repo / "README.md").read_text() == "my own unsaved edit\n"
    still = cli("integrate")
    assert still.code == 1
    assert "t: still waiting" in still.out
    git(in_repo, "checkout", "--", "README.md")
    assert cli("integrate").out.startswith("t: merged")
    assert (in_repo / "README.md").read_text() == "from the agent\n"
    assert cli("integrate").out == "No merges are waiting.\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["task", "done", "ghost", "--agent", "a"], "no task with id 'ghost'"),
        (["task", "done", "t", "--agent", "a"], "does not hold a claim"),
        (["integrate", "t"], "has no merge waiting"),
        (["agent", "workspace", "--id", "../up"], "invalid agent id"),
        (["agent", "run", "--id", "a b"], "invalid agent id"),
        (["agent", "run", "--id", "a", "--max-tasks", "0"], "--max-tasks"),
    ],
)
def test_bad_agent_input_is_refused(cli: Cli, in_repo: Path, args: list[str], message: str) -> None:
    cli("task", "add", "T", "--id", "t")
    result = cli(*args)
    assert result.code in (1, 2)
    assert message in result.err
    assert len(result.err.splitlines()) == 1
