"""The agent loop with real git and real processes; only the executor is a small script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from stigmergy_cli import events, gitops, orphans
from stigmergy_cli.agent_loop import Agent, AgentStopped
from stigmergy_cli.environment import Environment
from stigmergy_cli.sweep import sweep

from .conftest import add_task as _add
from .conftest import configured as _env
from .conftest import git, make_agent
from .conftest import start_agent as _start_agent
from .conftest import wait_for as _wait_for

STIGMERGY = Path(sys.executable).parent / "stigmergy"
WRITE_FILE = 'printf "%s\\n" "$STIGMERGY_TASK_ID" > "$STIGMERGY_TASK_ID.txt"'


def _agent(env: Environment, command: str | None = WRITE_FILE, **options: object) -> Agent:
    return make_agent(env, command, **options)


def _events(env: Environment, kind: str) -> list[dict[str, object]]:
    return [e for e in events.read(env.layout.events) if e["event"] == kind]


def test_an_agent_turns_the_pool_into_merged_commits(env_root: Path) -> None:
    env = _env(env_root)
    _add(env, "a")
    _add(env, "b", depends_on=["a"], verify="test -f a.txt")
    _add(env, "c", priority=90)
    summary = _agent(env, idle_exit=0).run()
    assert (summary.done, summary.failed) == (3, 0)
    log = git(env_root, "log", "--format=%s", "main")
    assert log.splitlines()[:3] == ["Task b", "Task a", "Task c"]  # c first: priority; b after a
    for task_id in "abc":
        assert (env_root / f"{task_id}.txt").read_text() == f"{task_id}\n"
        assert gitops.rev_parse(env_root, f"refs/stigmergy/results/{task_id}") is not None
        record = env.store.get(task_id)
        assert record.state == "done"
        assert record.task.result is not None
        assert record.task.result["merged"] is True
        assert (env.layout.env / str(record.task.result["log"])).exists()
    assert git(env_root, "status", "--porcelain", "--untracked-files=no") == ""
    assert [e["event"] for e in events.read(env.layout.events)][-1] == "agent_stopped"


def test_the_executor_sees_the_task_only_through_its_environment(env_root: Path) -> None:
    env = _env(env_root)
    _add(env, "t", description="Do the thing")
    dump = (
        "env | grep ^STIGMERGY_ | grep -v PROMPT | sort > env.txt; "
        'printf "%s" "$STIGMERGY_PROMPT" > prompt.txt'
    )
    _agent(env, dump, once=True).run()
    variables = dict(line.split("=", 1) for line in (env_root / "env.txt").read_text().splitlines())
    worktree = str(env.layout.workspace("alpha"))
    assert variables == {
        "STIGMERGY_AGENT": "alpha",
        "STIGMERGY_ATTEMPT": "1",
        "STIGMERGY_ROOT": str(env_root),
        "STIGMERGY_TASK_FILE": str(env.layout.task_file("active", "t")),
        "STIGMERGY_TASK_ID": "t",
        "STIGMERGY_TASK_TITLE": "Task t",
        "STIGMERGY_WORKTREE": worktree,
    }
    prompt = (env_root / "prompt.txt").read_text()
    assert "Task t" in prompt
    assert "Do the thing" in prompt
    assert worktree in prompt


def test_failures_count_attempts_and_keep_the_work(env_root: Path) -> None:
    env = _env(env_root)
    _add(env, "t", max_attempts=2)
    summary = _agent(env, "echo partial > half.txt; echo boom; exit 3", idle_exit=0).run()
    assert (summary.done, summary.failed) == (0, 2)
    record = env.store.get("t")
    assert (record.state, record.task.attempts) == ("failed", 2)
    assert record.task.result is not None
    assert "executor exited 3" in str(record.task.result["reason"])
    kept = git(
        env_root, "for-each-ref", "--format=%(refname)", "refs/stigmergy/attempts/t/"
    ).split()
    assert len(kept) == 2
    assert git(env_root, "show", f"{kept[0]}:half.txt") == "partial"
    assert "boom" in (env.layout.logs / "t" / "1.log").read_text()


def test_a_failing_verify_is_a_failed_attempt(env_root: Path) -> None:
    env = _env(env_root)
    _add(env, "t", verify="test -f never.txt", max_attempts=1)
    summary = _agent(env, once=True).run()
    assert summary.failed == 1
    assert "verify exited 1" in str(env.store.get("t").task.result)
    assert not (env_root / "t.txt").exists()


def test_a_timeout_fails_the_attempt(env_root: Path) -> None:
    env = _env(env_root)
    _add(env, "t", timeout=0.5, max_attempts=1)
    started = time.monotonic()
    _agent(env, "sleep 30", once=True).run()
    assert time.monotonic() - started < 15
    assert "timed out after 0.5s" in str(env.store.get("t").task.result)


@pytest.mark.parametrize(
    ("said", "code"),
    [
        ("API Error: rate limit exceeded", 1),
        # Aider exits 0 after every API failure, its provider's words in its output.
        ("litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit", 0),
    ],
    ids=["exit-1", "aider-exit-0"],
)
def test_a_rate_limit_gives_the_task_back_without_an_attempt(
    env_root: Path, said: str, code: int
) -> None:
    env = _env(env_root, rate_limit_backoff=0.2, rate_limit_backoff_max=0.4)
    _add(env, "t")
    marker = env_root / "limited-once"
    script = (
        f'if [ ! -e "{marker}" ]; then touch "{marker}"; '
        f'echo "{said}"; exit {code}; fi; {WRITE_FILE}'
    )
    agent = _agent(env, script, max_tasks=1)
    started = time.monotonic()
    summary = agent.run()
    assert time.monotonic() - started >= 0.15  # it backed off before trying again
    assert (summary.given_back, summary.done, summary.failed) == (1, 1, 0)
    record = env.store.get("t")
    assert (record.state, record.task.attempts, record.task.skip_count) == ("done", 0, 0)
    assert any("rate-limited" in line for line in agent.said)  # type: ignore[attr-defined]


def test_an_agent_only_claims_what_it_can_execute(env_root: Path) -> None:
    env = _env(env_root)
    _add(env, "needs-executor")
    _add(env, "brings-its-own", command="echo self > self.txt")
    summary = _agent(env, None, idle_exit=0).run()
    assert summary.done == 1
    assert env.store.get("needs-executor").state == "pending"
    assert env.store.get("brings-its-own").state == "done"


def _collide(env_root: Path, tmp_path: Path) -> Environment:
    """Two tasks that set the same line, done by two agents at once from the same tip."""
    (env_root / "shared.txt").write_text("x = 1\n")
    git(env_root, "add", "shared.txt")
    git(env_root, "commit", "-q", "-m", "shared")
    env = _env(env_root)
    # Each executor waits until both have started, so neither merges before the other began.
    gate = tmp_path / "gate"
    gate.mkdir()
    wait = (
        f'touch "{gate}/$STIGMERGY_AGENT"; '
        f'until [ "$(ls "{gate}" | wc -l)" -ge 2 ]; do sleep 0.02; done'
    )
    _add(env, "a", command=f"{wait}; echo 'x = 2' > shared.txt")
    _add(env, "b", command=f"{wait}; echo 'x = 3' > shared.txt")
    threads = [
        threading.Thread(target=_agent(env, None, agent=name, once=True).run)
        for name in ("alpha", "beta")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return env


def test_two_tasks_on_one_line_end_in_a_resolved_conflict(env_root: Path, tmp_path: Path) -> None:
    env = _collide(env_root, tmp_path)
    conflicts = [r for r in env.store.scan(time.time()).records if r.task.type == "merge_conflict"]
    assert len(conflicts) == 1
    conflict = conflicts[0]
    assert (conflict.state, conflict.task.priority) == ("pending", 95)
    resolve = "printf 'x = 5\\n' > shared.txt"
    summary = _agent(env, resolve, agent="gamma", once=True).run()
    assert summary.done == 1
    assert (env_root / "shared.txt").read_text() == "x = 5\n"
    for original in ("a", "b"):
        result = env.store.get(original).task.result
        assert result is not None
        assert result["merged"] is True


def test_markers_left_in_a_conflict_fail_the_resolution(env_root: Path, tmp_path: Path) -> None:
    env = _collide(env_root, tmp_path)
    summary = _agent(env, "true", agent="lazy", once=True).run()
    assert summary.failed == 1
    (conflict,) = [
        r for r in env.store.scan(time.time()).records if r.task.type == "merge_conflict"
    ]
    assert "conflict markers left in shared.txt" in str(conflict.task.result)


def test_ctrl_c_gives_the_task_back_without_an_attempt(env_root: Path) -> None:
    env = _env(env_root)
    _add(env, "t")
    proc = _start_agent(env_root, "--id", "alpha", "--exec", "touch started; sleep 60")
    worktree = env.layout.workspace("alpha")
    _wait_for((worktree / "started").exists)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, output
    assert "given back (interrupted)" in output
    record = env.store.get("t")
    assert (record.state, record.task.attempts, record.task.skip_count) == ("pending", 0, 0)
    assert env.layout.lock_dir("t").exists() is False


def test_a_second_ctrl_c_exits_at_once_and_the_sweep_recovers(env_root: Path) -> None:
    env = _env(env_root)
    _add(env, "t")
    # The executor ignores SIGTERM, so the first Ctrl-C alone would wait out the kill grace.
    proc = _start_agent(
        env_root, "--id", "alpha", "--exec", "trap '' TERM; touch started; sleep 60"
    )
    _wait_for((env.layout.workspace("alpha") / "started").exists)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert not orphans.busy(env.layout, "alpha")  # nothing of its executor left running
    (action,) = sweep(env.store, env.config, time.time()).actions
    assert (action.kind, action.to_state) == ("reclaimed", "pending")


@pytest.mark.slow
def test_a_swept_then_resumed_agent_cannot_land_its_result(env_root: Path) -> None:
    env = _env(env_root, heartbeat_interval=0.2, lease=1)
    _add(env, "t")
    proc = _start_agent(
        env_root, "--id", "sleepy", "--once", "--exec", f"touch started; sleep 1; {WRITE_FILE}"
    )
    _wait_for((env.layout.workspace("sleepy") / "started").exists)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(1.6)
        (action,) = sweep(env.store, env.config, time.time()).actions
        assert action.kind == "reclaimed"
        summary = _agent(env, "echo winner > t.txt", agent="winner", once=True).run()
        assert summary.done == 1
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    output, _ = proc.communicate(timeout=30)
    assert "not merging" in output or "claim lost" in output, output
    assert (env_root / "t.txt").read_text() == "winner\n"
    assert git(env_root, "log", "--format=%s", "main").count("Task t") == 1
    kept = git(env_root, "for-each-ref", "--format=%(refname)", "refs/stigmergy/").split()
    assert any("lost" in ref or "salvage" in ref for ref in kept)


@pytest.mark.slow
def test_eight_agents_do_every_task_exactly_once(env_root: Path) -> None:
    count = int(os.environ.get("STIGMERGY_STRESS_TASKS", "1000"))
    env = _env(env_root)
    batch = "".join(f"- {{id: t{n:04d}, title: Task {n}}}\n" for n in range(count))
    (env_root / "batch.yaml").write_text(batch)
    subprocess.run([str(STIGMERGY), "task", "import", "batch.yaml"], cwd=env_root, check=True)
    (env_root / "batch.yaml").unlink()
    agents = [
        _start_agent(env_root, "--id", f"a{n}", "--exec", WRITE_FILE, "--idle-exit", "2", "-q")
        for n in range(8)
    ]
    for proc in agents:
        proc.communicate(timeout=600)
        assert proc.returncode == 0
    records = env.store.scan(time.time()).records
    assert {r.state for r in records} == {"done"}
    assert len(records) == count
    trailers = git(
        env_root, "log", "--format=%(trailers:key=Stigmergy-Task,valueonly)", "main"
    ).split()
    assert sorted(trailers) == sorted(f"t{n:04d}" for n in range(count))  # each exactly once
    for n in range(count):
        assert (env_root / f"t{n:04d}.txt").read_text() == f"t{n:04d}\n"
    assert git(env_root, "status", "--porcelain", "--untracked-files=no") == ""
    merged = [e for e in events.read(env.layout.events) if e["event"] == "merged"]
    assert len(merged) == count
    by_agent = {e["agent"] for e in merged}
    assert len(by_agent) > 1


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _children() -> int:
    return sum(
        1
        for pid in os.listdir("/proc")
        if pid.isdigit()
        and Path(f"/proc/{pid}/stat").exists()
        and Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1] == str(os.getpid())
    )


@pytest.mark.slow
def test_a_long_run_leaks_no_processes_or_file_handles(env_root: Path) -> None:
    env = _env(env_root)
    for n in range(10):
        _add(env, f"warm{n}")
    _agent(env, WRITE_FILE, agent="soak", idle_exit=0).run()
    fds, children = _open_fds(), _children()
    for n in range(120):
        _add(env, f"soak{n}")
    summary = _agent(env, WRITE_FILE, agent="soak", idle_exit=0).run()
    assert summary.done == 120
    assert _open_fds() == fds
    assert _children() == children


def test_an_agent_makes_its_worktree_as_it_starts(env_root: Path) -> None:
    # Before any task: agents started together must not queue on git's worktree lock when
    # the first work arrives.
    env = _env(env_root)
    summary = _agent(env, agent="early", idle_exit=0).run()
    assert summary.attempted == 0
    workspace = env.layout.workspace("early")
    assert git(workspace, "rev-parse", "--abbrev-ref", "HEAD") == "stigmergy/early"
    assert git(workspace, "rev-parse", "HEAD") == git(env_root, "rev-parse", "main")


def test_one_agent_id_runs_in_one_process(env_root: Path) -> None:
    first = _start_agent(env_root, "--id", "solo", "--exec", "true", "--idle-exit", "30")
    try:
        _wait_for((env_root / ".stigmergy" / "agents" / "solo.json").exists)
        second = subprocess.run(
            [str(STIGMERGY), "agent", "run", "--id", "solo", "--exec", "true", "--once"],
            cwd=env_root,
            capture_output=True,
            text=True,
            check=False,
        )
        assert second.returncode != 0
        assert second.stderr.count("\n") == 1
        assert "agent 'solo' is already running on this machine" in second.stderr
        other = subprocess.run(  # another id is another agent
            [str(STIGMERGY), "agent", "run", "--id", "other", "--exec", "true", "--once"],
            cwd=env_root,
            capture_output=True,
            check=False,
        )
        assert other.returncode == 0
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)


def test_git_locks_left_in_an_agents_worktree_by_a_kill_are_cleared_as_it_starts(
    env_root: Path,
) -> None:
    env = _env(env_root)
    _agent(env, agent="phoenix", idle_exit=0).run()  # its worktree exists
    git_dir = Path(git(env.layout.workspace("phoenix"), "rev-parse", "--absolute-git-dir"))
    left = [git_dir / "index.lock", git_dir / "HEAD.lock"]
    left.append(env_root / ".git" / "refs" / "heads" / "stigmergy" / "phoenix.lock")
    for lock in left:  # what `kill -9` of the agent's process group, git and all, leaves
        lock.write_text("")
    _add(env, "t")
    agent = _agent(env, agent="phoenix", once=True)
    assert agent.run().done == 1
    assert not any(lock.exists() for lock in left)
    assert sum("removed" in line for line in agent.said) == 3  # type: ignore[attr-defined]
    assert (env_root / "t.txt").read_text() == "t\n"


def test_tasks_failing_on_the_agents_own_trouble_slow_it_down(env_root: Path) -> None:
    # The executor leaves git's index lock in the worktree, as a git it started and that was
    # killed would: every task then fails in committing or resetting, not in its executor.
    # Without a pause, the agent would use up the attempts of the whole pool in seconds.
    env = _env(env_root)
    _add(env, "t1")
    agent = _agent(env, 'touch "$(git rev-parse --git-dir)/index.lock"', max_tasks=3)
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return False

    agent._wait = wait  # type: ignore[method-assign]
    summary = agent.run()
    assert summary.failed == 3
    assert [round(w) for w in waits] == [1, 2]  # before the 2nd and 3rd attempt: doubling
    assert sum("waiting" in line for line in agent.said) == 3  # type: ignore[attr-defined]
    record = env.store.get("t1")  # its attempts counted, its reason kept
    assert (record.state, record.task.attempts) == ("failed", 3)
    assert "index.lock" in (record.task.result or {})["reason"]


def test_an_agent_whose_worktree_cannot_be_made_stops_at_once(env_root: Path) -> None:
    env = _env(env_root)
    blocked = env.layout.workspace("alpha")
    blocked.mkdir(parents=True)
    (blocked / "notes.txt").write_text("not a worktree\n")
    _add(env, "t1")
    with pytest.raises(AgentStopped, match="is not a git worktree; move it away first"):
        _agent(env).run()
    record = env.store.get("t1")
    assert (record.state, record.task.attempts) == ("pending", 0)


def _git_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the name of each git command the agents start (config, add, ...)."""
    commands: list[str] = []
    real_run = gitops.run

    def spy(args: list[str], cwd: Path, **options: object) -> object:
        commands.append(next(a for a in args if not a.startswith("-") and "=" not in a))
        return real_run(args, cwd, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(gitops, "run", spy)
    return commands


def test_an_agent_asks_who_commits_before_its_first_task(
    env_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not at its first commit and first merge: that is two more git processes under the
    # integration lock, for every agent at once when a round ends.
    env = _env(env_root)
    _add(env, "t")
    commands = _git_commands(monkeypatch)
    assert _agent(env, agent="new", once=True).run().done == 1
    asked = [n for n, command in enumerate(commands) if command in ("config", "var")]
    assert asked
    assert max(asked) < commands.index("add")


def test_a_worktree_clean_at_the_tip_starts_its_first_task_without_a_reset(
    env_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(env_root)
    _agent(env, agent="early", idle_exit=0).run()  # the worktree, clean at main's tip
    leftover = env.layout.workspace("late") / "stray.txt"
    _agent(env, agent="late", idle_exit=0).run()
    leftover.write_text("not committed\n")  # this one is not clean: it is reset, and kept
    _add(env, "t1")
    _add(env, "t2")
    commands = _git_commands(monkeypatch)
    assert _agent(env, agent="early", once=True).run().done == 1
    assert "reset" not in commands
    commands.clear()
    assert _agent(env, agent="late", once=True).run().done == 1
    assert "reset" in commands
    assert not leftover.exists()
    kept = git(env_root, "for-each-ref", "--format=%(refname)", "refs/stigmergy/attempts/")
    assert kept.startswith("refs/stigmergy/attempts/late/")
