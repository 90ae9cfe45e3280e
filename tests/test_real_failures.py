"""Real agents fail in real ways: killed, paused, misconfigured, giving up, rate-limited.

Each test does what a user saw go wrong, with real agent processes, real signals and real
git, and checks what became of every task: done with real work, pending with an honest
count, or failed with a reason, and nothing one executor wrote landed in another's result.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stigmergy_cli import events, orphans
from stigmergy_cli.agent_loop import NO_CHANGE, AgentStopped
from stigmergy_cli.environment import Environment, initialize, open_environment
from stigmergy_cli.sweep import sweep

from .conftest import add_task as _add
from .conftest import configured as _env
from .conftest import git, start_agent
from .conftest import make_agent as _agent
from .conftest import wait_for as _wait_for

STIGMERGY = Path(sys.executable).parent / "stigmergy"
WRITE_FILE = 'printf "%s\\n" "$STIGMERGY_TASK_ID" > "$STIGMERGY_TASK_ID.txt"'


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _states(env: Environment) -> dict[str, tuple[str, int]]:
    return {r.task.id: (r.state, r.task.attempts) for r in env.store.scan(time.time()).records}


# -- an executor never outlives its agent's claim --------------------------------------------

# A coding agent's tool, started by the executor, that goes on writing into the worktree: a
# grandchild, so the kernel's death signal for the executor's first process does not reach it.
ORPHAN = (
    'sh -c \'echo $$ > "$PIDS/orphan.pid"; '
    "while :; do echo late >> proof.txt; sleep 0.05; done' & "
    'touch "$PIDS/started"; wait'
)


def _start_agent(root: Path, pids: Path, *args: str) -> subprocess.Popen[str]:
    return start_agent(root, *args, extra_env={"PIDS": str(pids)})


def _orphan_of_killed_agent(env: Environment, tmp_path: Path) -> int:
    """Agent alpha killed with `kill -9` while its executor's tool works: the tool's pid."""
    pids = tmp_path / "pids"
    pids.mkdir()
    _add(env, "a", command=ORPHAN)
    proc = _start_agent(env.layout.root, pids, "--id", "alpha")
    try:
        _wait_for((pids / "started").exists)
        _wait_for((pids / "orphan.pid").exists)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    orphan = int((pids / "orphan.pid").read_text())
    proof = env.layout.workspace("alpha") / "proof.txt"
    size = proof.stat().st_size if proof.exists() else 0
    _wait_for(lambda: proof.exists() and proof.stat().st_size > size)  # it works on
    assert _alive(orphan)
    return orphan


def test_a_killed_agents_executor_is_stopped_when_the_agent_starts_again(
    env_root: Path, tmp_path: Path
) -> None:
    env = _env(env_root)
    orphan = _orphan_of_killed_agent(env, tmp_path)
    _add(env, "b", command=WRITE_FILE, priority=90)  # what alpha does next, once restarted
    again = subprocess.run(
        [str(STIGMERGY), "agent", "run", "--id", "alpha", "--once"],
        cwd=env_root,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PIDS": str(tmp_path / "pids")},
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "process(es) of an earlier executor" in again.stdout
    assert not _alive(orphan)
    assert env.store.get("b").state == "done"
    landed = git(env_root, "show", "--name-only", "--format=", "main")
    assert landed.split() == ["b.txt"]  # not the orphan's proof.txt
    assert "proof.txt" not in git(env_root, "ls-tree", "-r", "--name-only", "main")


def test_the_sweep_stops_a_killed_agents_executor_before_giving_its_task_back(
    env_root: Path, tmp_path: Path
) -> None:
    env = _env(env_root)
    orphan = _orphan_of_killed_agent(env, tmp_path)
    report = sweep(env.store, env.config, time.time())
    kinds = [(a.kind, a.target) for a in report.actions]
    assert kinds == [("stopped", "a"), ("reclaimed", "a")]  # stopped first
    assert not _alive(orphan)
    assert not orphans.busy(env.layout, "alpha")
    assert _states(env)["a"] == ("pending", 1)
    proof = env.layout.workspace("alpha") / "proof.txt"
    size = proof.stat().st_size
    time.sleep(0.2)
    assert proof.stat().st_size == size  # nobody writes there any more


def test_an_executor_left_behind_by_a_claim_already_gone_is_stopped_too(
    env_root: Path, tmp_path: Path
) -> None:
    # The claim was given back (by a sweep that did not know about executors, or on a git
    # remote); the tool still runs.
    env = _env(env_root)
    orphan = _orphan_of_killed_agent(env, tmp_path)
    for path in env.layout.locks.glob("*.lock"):
        if path.is_dir():  # the claim: gone, as if released
            os.rename(path, env.layout.locks / f".tomb-{path.name}")
    report = sweep(env.store, env.config, time.time())
    assert ("stopped", "locks/.exec-alpha.lock") in [(a.kind, a.target) for a in report.actions]
    assert not _alive(orphan)


@pytest.mark.slow
def test_a_paused_agents_executor_is_stopped_when_its_claim_is_broken(
    env_root: Path, tmp_path: Path
) -> None:
    env = _env(env_root, heartbeat_interval=0.2, lease=1)
    pids = tmp_path / "pids"
    pids.mkdir()
    _add(env, "a", command=ORPHAN)
    proc = _start_agent(env_root, pids, "--id", "sleepy", "--once")
    _wait_for((pids / "orphan.pid").exists)
    orphan = int((pids / "orphan.pid").read_text())
    os.kill(proc.pid, signal.SIGSTOP)  # Ctrl-Z, a suspended laptop: its executor runs on
    try:
        time.sleep(1.6)
        report = sweep(env.store, env.config, time.time())
        assert [a.kind for a in report.actions] == ["stopped", "reclaimed"]
        assert not _alive(orphan)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    output, _ = proc.communicate(timeout=30)
    assert "heartbeat lapsed; not merging" in output
    assert "proof.txt" not in git(env_root, "ls-tree", "-r", "--name-only", "main")


def test_a_process_that_leaves_the_executors_group_is_stopped_before_the_commit(
    env_root: Path, tmp_path: Path
) -> None:
    # `setsid` puts it in a session of its own, out of reach of the group kill; it still
    # holds the executor lock it inherited.
    env = _env(env_root)
    pid_file = tmp_path / "escaped.pid"
    escape = (
        f"setsid sh -c 'echo $$ > {pid_file}; sleep 1; echo late > proof.txt' "
        f"</dev/null >/dev/null 2>&1 & {WRITE_FILE}; until [ -s {pid_file} ]; do sleep 0.01; done"
    )
    _add(env, "t")
    assert _agent(env, escape, once=True).run().done == 1
    assert not _alive(int(pid_file.read_text()))
    time.sleep(1.2)
    assert not (env.layout.workspace("alpha") / "proof.txt").exists()


# -- misconfiguration is the agent's failure, not the task's ---------------------------------

CLAUDE_AS_ROOT = (
    "echo '--dangerously-skip-permissions cannot be used with root/sudo privileges for "
    "security reasons' >&2; exit 1"
)
UNKNOWN_FLAG = (
    "echo \"error: unexpected argument '--full-auto' found\" >&2; "
    'echo "Usage: codex exec [OPTIONS] [PROMPT]" >&2; exit 2'
)


@pytest.mark.parametrize(
    ("executor", "said"),
    [
        ("./myexec.sh", "not found"),
        (CLAUDE_AS_ROOT, "IS_SANDBOX=1"),
        (UNKNOWN_FLAG, "--help"),
        ("$STIGMERGY_ROOT/README.md", "cannot be run"),  # a file, not executable: 126
    ],
    ids=["missing", "root", "unknown-flag", "not-executable"],
)
def test_a_misconfigured_executor_stops_the_agent_and_leaves_the_queue_as_it_was(
    env_root: Path, executor: str, said: str
) -> None:
    env = _env(env_root)
    for n in range(4):
        _add(env, f"t{n}")
    agent = _agent(env, executor, idle_exit=0)
    with pytest.raises(AgentStopped) as stopped:
        agent.run()
    assert said in str(stopped.value)
    assert "\n" not in str(stopped.value)
    assert set(_states(env).values()) == {("pending", 0)}
    assert not [e for e in events.read(env.layout.events) if e["event"] == "failed"]
    assert agent.summary.stopped == str(stopped.value)


def test_the_command_line_says_what_is_wrong_in_one_line_and_exits_non_zero(
    env_root: Path,
) -> None:
    env = _env(env_root)
    _add(env, "t")
    (env_root / "root.sh").write_text(f"#!/bin/sh\n{CLAUDE_AS_ROOT}\n")
    (env_root / "root.sh").chmod(0o755)
    proc = subprocess.run(
        [str(STIGMERGY), "agent", "run", "--id", "alpha", "--exec", "./root.sh"],
        cwd=env_root,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: Claude Code refuses")
    assert _states(env) == {"t": ("pending", 0)}


def test_a_relative_exec_path_is_taken_from_where_the_agent_starts(
    env_root: Path, tmp_path: Path
) -> None:
    env = _env(env_root)
    _add(env, "t")
    elsewhere = tmp_path / "scripts"
    elsewhere.mkdir()
    (elsewhere / "myexec.sh").write_text(f"#!/bin/sh\n{WRITE_FILE}\n")
    (elsewhere / "myexec.sh").chmod(0o755)
    ok = subprocess.run(
        [
            str(STIGMERGY),
            "--root",
            str(env_root),
            "agent",
            "run",
            "--id",
            "a",
            "--exec",
            "./myexec.sh",
            "--once",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert env.store.get("t").state == "done"
    missing = subprocess.run(
        [str(STIGMERGY), "agent", "run", "--id", "b", "--exec", "./nowhere.sh"],
        cwd=env_root,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert missing.returncode == 2
    assert missing.stderr == (
        f"error: executor './nowhere.sh' does not exist (looked for {env_root}/nowhere.sh)\n"
    )


def test_a_repository_without_a_commit_is_refused_with_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    initialize(root, None, {})
    env = open_environment(root, None, {})
    _add(env, "t")
    with pytest.raises(AgentStopped, match="has no commit yet; commit something first"):
        _agent(env, WRITE_FILE, idle_exit=0).run()
    assert _states(env) == {"t": ("pending", 0)}


# -- the circuit breaker ---------------------------------------------------------------------


def test_the_breaker_stops_an_agent_whose_tasks_all_fail_at_once(env_root: Path) -> None:
    env = _env(env_root)
    for n in range(4):
        _add(env, f"t{n}")
    agent = _agent(env, "echo 'something no rule knows'; exit 1", idle_exit=0)
    with pytest.raises(AgentStopped, match=r"3 attempts in a row .* failed within 10s"):
        agent.run()
    failed = [e for e in events.read(env.layout.events) if e["event"] == "failed"]
    assert len(failed) == 2  # at most 3 attempts in all; the third was given back
    assert set(_states(env).values()) == {("pending", 0)}  # and those two taken back
    assert "not counted" in str(env.store.get(str(failed[0]["task"])).task.result)


def test_one_task_failing_fast_again_and_again_is_the_tasks_failure(env_root: Path) -> None:
    env = _env(env_root, max_attempts=3)
    _add(env, "only")
    summary = _agent(env, "exit 1", idle_exit=0).run()
    assert summary.failed == 3
    assert summary.stopped is None
    assert _states(env) == {"only": ("failed", 3)}


def test_the_breaker_can_be_turned_off(env_root: Path) -> None:
    env = _env(env_root, max_quick_failures=0, max_attempts=1)
    for n in range(4):
        _add(env, f"t{n}")
    summary = _agent(env, "exit 1", idle_exit=0).run()
    assert summary.failed == 4
    assert {state for state, _ in _states(env).values()} == {"failed"}


# -- an agent that did nothing is not done ----------------------------------------------------


def test_an_executor_that_changes_nothing_has_not_done_its_task(env_root: Path) -> None:
    env = _env(env_root, max_quick_failures=0)
    _add(env, "find", max_attempts=2)
    _add(env, "after", depends_on=["find"])
    summary = _agent(env, 'echo "I could not find the file, giving up."', idle_exit=0).run()
    assert (summary.done, summary.failed) == (0, 2)
    record = env.store.get("find")
    assert (record.state, record.task.attempts) == ("failed", 2)
    assert record.task.result is not None
    assert record.task.result["reason"] == NO_CHANGE
    assert env.store.get("after").state == "pending"  # its dependant is not let through
    assert [e["reason"] for e in events.read(env.layout.events) if e["event"] == "failed"] == [
        NO_CHANGE,
        NO_CHANGE,
    ]


def test_a_task_that_only_checks_something_may_change_nothing(env_root: Path) -> None:
    env = _env(env_root)
    _add(env, "check", allow_empty=True, verify="test -f README.md")
    summary = _agent(env, "true", idle_exit=0).run()
    assert summary.done == 1
    record = env.store.get("check")
    assert record.state == "done"
    assert record.task.result is not None
    assert record.task.result["outcome"] == "unchanged"
    (merged,) = [e for e in events.read(env.layout.events) if e["event"] == "merged"]
    assert merged["outcome"] == "unchanged"


def test_allow_empty_can_be_the_pools_default(env_root: Path) -> None:
    env = _env(env_root, allow_empty="true")
    _add(env, "check")
    _add(env, "strict", allow_empty=False)
    summary = _agent(env, "true", idle_exit=0, max_tasks=2).run()
    assert _states(env)["check"] == ("done", 0)
    assert _states(env)["strict"][1] == 1
    assert summary.done == 1


def test_a_missing_api_key_with_exit_0_stops_the_agent(env_root: Path) -> None:
    env = _env(env_root)
    _add(env, "t")
    script = "echo 'litellm.AuthenticationError: AnthropicException - invalid x-api-key'"
    with pytest.raises(AgentStopped, match="credentials"):
        _agent(env, script, idle_exit=0).run()
    assert _states(env) == {"t": ("pending", 0)}


def test_init_in_a_repository_without_a_commit_says_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    done = subprocess.run(
        [str(STIGMERGY), "init"], cwd=root, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "Branch main has no commit yet" in done.stdout
    assert "git commit --allow-empty" in done.stdout


def test_no_git_on_the_path_stops_the_agent_with_the_task_untouched(
    env_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(env_root)
    _agent(env, WRITE_FILE, idle_exit=0).run()  # its worktree exists; then git goes away
    _add(env, "t")
    monkeypatch.setenv("PATH", str(env_root / "no-such-dir"))
    with pytest.raises(AgentStopped, match="git is not installed or not on PATH"):
        _agent(env, WRITE_FILE, idle_exit=0).run()
    assert _states(env) == {"t": ("pending", 0)}


def test_a_process_that_closed_the_inherited_lock_is_found_by_its_session(
    env_root: Path, tmp_path: Path
) -> None:
    # Python's subprocess closes the descriptors it does not pass on: such a grandchild
    # holds no executor lock, but stays in the executor's session, with its environment.
    # (`set -m` gives it a process group of its own, so killing the others does not end it.)
    env = _env(env_root, heartbeat_interval=0.1, lease=1)
    pids = tmp_path / "pids"
    pids.mkdir()
    closer = (
        f"set -m; {sys.executable} -c 'import os, time; os.closerange(3, 4096); "
        'open(os.environ["PIDS"] + "/orphan.pid", "w").write(str(os.getpid())); '
        "time.sleep(60)' & wait"
    )
    _add(env, "a", command=closer)
    proc = _start_agent(env_root, pids, "--id", "alpha")
    try:
        _wait_for((pids / "orphan.pid").exists)
        time.sleep(0.5)  # a heartbeat or two, naming the executor's session
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    orphan = int((pids / "orphan.pid").read_text())
    assert _alive(orphan)
    report = sweep(env.store, env.config, time.time())
    assert ("stopped", "a") in [(a.kind, a.target) for a in report.actions]
    assert not _alive(orphan)
