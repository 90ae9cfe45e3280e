"""The git backend: agents in several clones coordinating through one remote, over file://
and over a real network transport (`git daemon` on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import stigmergy_cli
from stigmergy_cli import api, backends, remote
from stigmergy_cli.environment import open_environment
from stigmergy_cli.errors import ConfigError
from stigmergy_cli.remote import CLAIMS, Update
from stigmergy_cli.remote_pool import RemotePool

from .conftest import Cli, git

STIGMERGY = Path(sys.executable).parent / "stigmergy"
WRITE_FILE = 'printf "%s\\n" "$STIGMERGY_AGENT" > "$STIGMERGY_TASK_ID.txt"'


def _origin(tmp_path: Path) -> Path:
    """A bare repository with a main branch of one commit: the team's shared remote."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(bare), str(seed))
    (seed / "README.md").write_text("shared\n")
    git(seed, "add", "README.md")
    git(seed, "commit", "-q", "-m", "initial")
    git(seed, "push", "-q", "origin", "main")
    return bare


def _clone(tmp_path: Path, url: str, name: str) -> Path:
    """A machine: a clone of the remote, initialized for the git backend."""
    path = tmp_path / name
    git(tmp_path, "clone", "-q", url, str(path))
    _run(path, "init", "--remote", "origin")
    return path


def _run(
    cwd: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(STIGMERGY), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"stigmergy {' '.join(args)}: {proc.stderr}{proc.stdout}")
    return proc


def _remote_tasks(clone: Path) -> dict[str, dict[str, object]]:
    listed = json.loads(_run(clone, "task", "list", "--refresh", "--json").stdout)
    return {t["id"]: t for t in listed}


def _trailers(bare: Path) -> Counter[str]:
    log = git(bare, "log", "main", "--format=%(trailers:key=Stigmergy-Task,valueonly)")
    return Counter(line.strip() for line in log.splitlines() if line.strip())


def _agents(
    clones: list[Path], *args: str, name: str = "agent", **env: str
) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [str(STIGMERGY), "agent", "run", "--id", f"{name}{k}", *args],
            cwd=clone,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env},
        )
        for k, clone in enumerate(clones)
    ]


def _every_task_once(tmp_path: Path, url: str, bare: Path, n_tasks: int) -> None:
    clones = [_clone(tmp_path, url, f"machine{k}") for k in range(3)]
    ids = [f"t{k:02d}" for k in range(n_tasks)]
    for task_id in ids:
        _run(clones[0], "task", "add", f"Task {task_id}", "--id", task_id)
    agents = _agents(clones, "--exec", WRITE_FILE, "--idle-exit", "3")
    outputs = [agent.communicate(timeout=240)[0] for agent in agents]
    assert [a.returncode for a in agents] == [0, 0, 0], outputs
    listed = _remote_tasks(clones[1])
    assert {t: listed[t]["status"] for t in ids} == dict.fromkeys(ids, "done"), outputs
    trailers = _trailers(bare)
    assert {t: trailers[t] for t in ids} == dict.fromkeys(ids, 1)  # each landed exactly once
    tree = set(git(bare, "ls-tree", "--name-only", "main").split())
    assert {f"{t}.txt" for t in ids} <= tree
    # The work was shared: more than one machine landed something.
    landed_by = Counter(git(bare, "show", f"main:{t}.txt").strip() for t in ids)
    assert len(landed_by) >= 2, landed_by


def test_three_machines_over_file_urls_do_every_task_once(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    _every_task_once(tmp_path, bare.as_uri(), bare, n_tasks=18)


# -- git daemon ------------------------------------------------------------------------------


class Daemon:
    """`git daemon` serving tmp_path on a free port of 127.0.0.1, pushes enabled."""

    def __init__(self, base: Path) -> None:
        self.base = base
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                f"--base-path={self.base}",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its connection children share the group: one kill
        )
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as conn:
                if conn.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        """kill -9 of the daemon and every connection it is serving."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    served = Daemon(tmp_path)
    served.start()
    yield served
    served.kill()


def test_three_machines_over_git_daemon_do_every_task_once(tmp_path: Path, daemon: Daemon) -> None:
    bare = _origin(tmp_path)
    _every_task_once(tmp_path, daemon.url("origin.git"), bare, n_tasks=12)


_CLAIMER = """
import sys, time
from pathlib import Path
from stigmergy_cli.environment import open_environment
from stigmergy_cli.errors import ConfigError
from stigmergy_cli.remote_pool import RemotePool
from stigmergy_cli.claims import NothingClaimable
root, agent, gate = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
pool = RemotePool(open_environment(root, None, {}).layout, open_environment(root, None, {}).config)
pool.refresh()
while not gate.exists():
    time.sleep(0.005)
try:
    held = pool.claim_best(agent, role=None, now=time.time(), refresh=False)
except NothingClaimable:
    print("lost")
else:
    print("won", held.task.id)
"""


def test_sixteen_claimers_across_machines_one_winner_per_round(
    tmp_path: Path, daemon: Daemon
) -> None:
    _origin(tmp_path)
    clones = [_clone(tmp_path, daemon.url("origin.git"), f"machine{k}") for k in range(4)]
    for round_ in range(3):
        task_id = f"round{round_}"
        _run(clones[0], "task", "add", f"Round {round_}", "--id", task_id)
        gate = tmp_path / f"gate{round_}"
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", _CLAIMER, str(clones[k % 4]), f"racer{k}", str(gate)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in range(16)
        ]
        time.sleep(1.5)  # every racer has fetched and waits at the gate
        gate.touch()
        answers = [racer.communicate(timeout=120) for racer in racers]
        outcomes = [out.split()[0] if out else err for out, err in answers]
        assert outcomes.count("won") == 1, answers
        assert outcomes.count("lost") == 15, answers
        claims = git(tmp_path / "origin.git", "for-each-ref", CLAIMS)
        assert claims.count(f"{CLAIMS}{task_id}") == 1


# -- faults ----------------------------------------------------------------------------------


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _claim_of(bare: Path, task_id: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "-q", "--verify", f"{CLAIMS}{task_id}"],
        cwd=bare,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def test_a_stopped_holder_is_swept_by_another_machine_and_cannot_land(
    tmp_path: Path, daemon: Daemon
) -> None:
    bare = _origin(tmp_path)
    url = daemon.url("origin.git")
    slow, fast = _clone(tmp_path, url, "slow"), _clone(tmp_path, url, "fast")
    _run(slow, "task", "add", "Contended", "--id", "t")
    lease = {"STIGMERGY_AGENT_LEASE": "2", "STIGMERGY_AGENT_HEARTBEAT_INTERVAL": "0.5"}
    (holder,) = _agents([slow], "--once", "--exec", f"sleep 3; {WRITE_FILE}", name="slow", **lease)
    _wait_for(lambda: _claim_of(bare, "t"), 30, "the claim")
    holder.send_signal(signal.SIGSTOP)
    try:
        # The other machine's sweep judges staleness on its own clock: it must see the claim
        # unchanged for a whole lease before breaking it.
        first = json.loads(_run(fast, "sweep", "--json", env=lease).stdout)
        assert first["actions"] == []
        time.sleep(2.5)
        second = json.loads(_run(fast, "sweep", "--json", env=lease).stdout)
        assert [a["task"] for a in second["actions"]] == ["t"]
        assert _remote_tasks(fast)["t"]["status"] == "pending"
        (taker,) = _agents([fast], "--once", "--exec", WRITE_FILE, name="fast", **lease)
        out, _ = taker.communicate(timeout=60)
        assert taker.returncode == 0, out
        tip = git(bare, "rev-parse", "main")
    finally:
        holder.send_signal(signal.SIGCONT)
    out, _ = holder.communicate(timeout=60)
    assert "not merging" in out or "claim lost" in out, out
    assert git(bare, "rev-parse", "main") == tip  # the stale holder landed nothing
    assert git(bare, "show", "main:t.txt").strip() == "fast0"  # the taker's work, once
    assert _trailers(bare)["t"] == 1
    task = _remote_tasks(fast)["t"]
    assert task["status"] == "done"
    assert task["attempts"] == 1


_HANGING_HOOK = '#!/bin/sh\ntouch "$GIT_DIR/pushing"\nsleep 30\n'


def test_a_daemon_killed_mid_push_leaves_no_half_claim(tmp_path: Path, daemon: Daemon) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, daemon.url("origin.git"), "machine")
    _run(clone, "task", "add", "Wanted", "--id", "t")
    task_before = git(bare, "rev-parse", "refs/stigmergy/tasks/t")
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(_HANGING_HOOK)
    hook.chmod(0o755)
    env = open_environment(clone, None, {})
    pool = RemotePool(env.layout, env.config)
    pool.refresh()
    racer = subprocess.Popen(
        [sys.executable, "-c", _CLAIMER, str(clone), "alpha", str(tmp_path / "open")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    (tmp_path / "open").touch()
    _wait_for((bare / "pushing").exists, 30, "the push to reach the server")
    daemon.kill()  # mid-push: the objects are sent, the refs not yet updated
    out, err = racer.communicate(timeout=60)
    assert racer.returncode != 0, out
    assert "remote" in err.splitlines()[-1], err  # one line naming the remote
    # No half-claim: neither the claim nor the task moved.
    assert _claim_of(bare, "t") == ""
    assert git(bare, "rev-parse", "refs/stigmergy/tasks/t") == task_before
    hook.unlink()
    daemon.start()
    held = pool.claim_best("alpha", role=None, now=time.time())
    assert held.task.id == "t"
    assert _claim_of(bare, "t") == held.claim_commit


def test_a_landing_rides_out_a_server_restart(tmp_path: Path, daemon: Daemon) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, daemon.url("origin.git"), "machine")
    _run(clone, "task", "add", "Through the restart", "--id", "t")
    go = tmp_path / "go"
    wait_then_write = f'until [ -e "{go}" ]; do sleep 0.05; done; {WRITE_FILE}'
    (agent,) = _agents([clone], "--once", "--exec", wait_then_write)
    _wait_for(lambda: _claim_of(bare, "t"), 30, "the claim")
    daemon.kill()  # the work is done while the server is down: its landing finds no server
    go.touch()
    time.sleep(1)
    daemon.start()
    out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 0, out
    assert "t: merged" in out, out
    assert _trailers(bare)["t"] == 1
    assert git(bare, "show", "main:t.txt") == "agent0"
    assert _claim_of(bare, "t") == ""
    task = _remote_tasks(clone)["t"]
    assert task["status"] == "done"
    assert task["attempts"] == 0  # no attempt failed: landed by the first


# -- the protocol's rules, and bad input -----------------------------------------------------


def test_no_push_of_a_contended_ref_goes_without_a_lease() -> None:
    for ref in (f"{CLAIMS}t", "refs/stigmergy/tasks/t", "refs/heads/main"):
        with pytest.raises(ValueError, match="must name the value it expects"):
            Update(ref, "0" * 40, None)
    # And only remote.py pushes: every other module goes through Update.
    package = Path(stigmergy_cli.__file__).parent
    pushers = [
        path.name
        for path in package.rglob("*.py")
        if re.search(r"""["']push["']""", path.read_text())
    ]
    assert pushers == ["remote.py"]
    assert "--force-with-lease" in Path(remote.__file__).read_text()


def test_init_refuses_a_remote_it_cannot_use_and_writes_nothing(tmp_path: Path, cli: Cli) -> None:
    bare = _origin(tmp_path)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", bare.as_uri(), str(clone))
    git(clone, "remote", "add", "gone", (tmp_path / "nowhere.git").as_uri())
    for args, code, words in (
        (("--remote", "upstream"), 2, "no git remote named 'upstream'"),
        (("--remote", "gone"), 1, "cannot reach remote 'gone'"),
        (("--remote", "origin", "--target", "develop"), 2, "does not exist"),
        (("--remote=--upload-pack=x",), 2, "invalid remote name"),
    ):
        result = cli("init", *args, cwd=clone)
        assert result.code == code, (args, result)
        assert words in result.err, (args, result.err)
        assert len(result.err.strip().splitlines()) == 1
        assert not (clone / ".stigmergy").exists()


def test_an_unreachable_remote_is_one_clear_line(tmp_path: Path, daemon: Daemon) -> None:
    _origin(tmp_path)
    clone = _clone(tmp_path, daemon.url("origin.git"), "machine")
    _run(clone, "task", "add", "Something", "--id", "t")
    daemon.kill()
    for args in (("task", "list", "--refresh"), ("task", "add", "More"), ("sweep",)):
        proc = _run(clone, *args, check=False)
        assert proc.returncode == 1, (args, proc)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (args, proc.stderr)
        assert "remote 'origin'" in lines[0], (args, proc.stderr)


def test_cancel_and_retry_through_the_remote(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    here, there = (_clone(tmp_path, bare.as_uri(), name) for name in ("here", "there"))
    _run(here, "task", "add", "Maybe", "--id", "m")
    _run(here, "task", "cancel", "m")
    assert _remote_tasks(there)["m"]["status"] == "cancelled"
    again = _run(there, "task", "cancel", "m", check=False)
    assert again.returncode == 1
    assert "it is cancelled" in again.stderr
    _run(there, "task", "retry", "m")
    assert _remote_tasks(here)["m"]["status"] == "pending"
    _run(here, "task", "claim", "m", "--agent", "s1")
    held = _run(there, "task", "cancel", "m", check=False)
    assert held.returncode == 1
    assert "it is active" in held.stderr


def test_commands_without_git_support_refuse_it(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, bare.as_uri(), "machine")
    for args in (("task", "boost", "x"), ("mcp",)):
        proc = _run(clone, *args, check=False)
        assert proc.returncode == 1, (args, proc)
        assert "does not work with the git backend" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="the Python API does not work with the git backend"):
        api.open_environment(clone)


def test_an_import_lands_all_its_tasks_or_none(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, bare.as_uri(), "machine")
    _run(clone, "task", "add", "Existing", "--id", "old")
    batch = tmp_path / "batch.yaml"
    batch.write_text(
        "- {id: a, title: A}\n- {id: b, title: B, depends_on: [a]}\n- {id: old, title: X}\n"
    )
    refused = _run(clone, "task", "import", str(batch), check=False)
    assert refused.returncode == 1
    assert "'old' already exists" in refused.stderr
    assert sorted(_remote_tasks(clone)) == ["old"]  # neither a nor b
    batch.write_text("- {id: a, title: A}\n- {id: b, title: B, depends_on: [a, old]}\n")
    _run(clone, "task", "import", str(batch))
    listed = _remote_tasks(clone)
    assert sorted(listed) == ["a", "b", "old"]
    assert listed["b"]["depends_on"] == ["a", "old"]


_RACE_OR_RESOLVE = """case "$STIGMERGY_TASK_ID" in
  *.conflict) printf 'resolved\\n' > same.txt ;;
  *) sleep 2; printf '%s\\n' "$STIGMERGY_TASK_ID" > same.txt ;;
esac"""


def test_a_conflict_across_machines_becomes_a_task_that_resolves_it(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    clones = [_clone(tmp_path, bare.as_uri(), f"machine{k}") for k in range(2)]
    for task_id in ("x", "y"):
        _run(clones[0], "task", "add", f"Write {task_id}", "--id", task_id)
    agents = _agents(clones, "--exec", _RACE_OR_RESOLVE, "--idle-exit", "4")
    outputs = [agent.communicate(timeout=120)[0] for agent in agents]
    listed = _remote_tasks(clones[0])
    conflicts = [t for t in listed if t.endswith(".conflict")]
    assert len(conflicts) == 1, outputs
    original = conflicts[0].removesuffix(".conflict")
    assert {t: listed[t]["status"] for t in listed} == dict.fromkeys(listed, "done"), outputs
    result = listed[original]["result"]
    assert isinstance(result, dict)
    assert result["merged"] is True  # completed by its conflict task
    assert result["merged_by"] == conflicts[0]
    assert git(bare, "show", "main:same.txt") == "resolved"
    assert "<<<<<<<" not in git(bare, "show", "main:same.txt")


def test_an_agent_waits_out_an_unreachable_remote(tmp_path: Path, daemon: Daemon) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, daemon.url("origin.git"), "machine")
    daemon.kill()
    (agent,) = _agents([clone], "--exec", WRITE_FILE, "--idle-exit", "15")
    time.sleep(2)  # it finds the server gone: it says so and waits, it does not exit
    assert agent.poll() is None
    daemon.start()
    adder = _clone(tmp_path, daemon.url("origin.git"), "other")
    _run(adder, "task", "add", "After the outage", "--id", "later")
    _wait_for(lambda: _trailers(bare)["later"] == 1, 90, "the task to land")
    agent.send_signal(signal.SIGINT)
    out, _ = agent.communicate(timeout=60)
    assert "cannot claim" in out, out
    assert "later: merged" in out, out


def test_a_self_driving_agent_claims_renews_and_lands_through_the_remote(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    here, there = (_clone(tmp_path, bare.as_uri(), name) for name in ("here", "there"))
    for task_id in ("a", "b", "c"):
        _run(here, "task", "add", f"Task {task_id}", "--id", task_id, "--priority", "high")
    claimed = json.loads(_run(here, "task", "claim", "a", "--agent", "s1", "--json").stdout)
    assert claimed["status"] == "active"
    first_claim = _claim_of(bare, "a")
    assert first_claim
    _run(here, "agent", "heartbeat", "--id", "s1")  # a lease-checked push of a new claim commit
    assert _claim_of(bare, "a") not in ("", first_claim)
    # Another machine holds no claim on it: it can neither land nor give it back.
    for args in (("task", "done", "a"), ("task", "release", "a")):
        refused = _run(there, *args, "--agent", "s1", check=False)
        assert refused.returncode == 1
        assert "holds no claim on 'a' from this clone" in refused.stderr
    (Path(claimed["worktree"]) / "a.txt").write_text("from a session\n")
    landed = _run(here, "task", "done", "a", "--agent", "s1")
    assert "merged into main" in landed.stdout
    assert git(bare, "show", "main:a.txt") == "from a session"
    assert _claim_of(bare, "a") == ""
    _run(here, "task", "claim", "b", "--agent", "s1")
    _run(here, "task", "release", "b", "--agent", "s1")
    _run(here, "task", "claim", "c", "--agent", "s1")
    failed = _run(here, "task", "fail", "c", "--agent", "s1", "--reason", "no luck")
    assert "attempt 1 of 3" in failed.stdout
    listed = _remote_tasks(there)
    assert {t: listed[t]["status"] for t in "abc"} == {"a": "done", "b": "pending", "c": "pending"}
    assert listed["b"]["skip_count"] == 1
    assert listed["c"]["attempts"] == 1


def test_a_malformed_task_ref_is_skipped_with_its_name(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, bare.as_uri(), "machine")
    _run(clone, "task", "add", "Fine", "--id", "ok")
    empty_tree = git(bare, "hash-object", "-w", "-t", "tree", "/dev/null")
    for name, message in (
        ("junk", "stigmergy task junk: pending\n\n{not json"),
        ("liar", "stigmergy task someone-else: pending\n\n{}"),
        ("odd", "stigmergy task odd: exploded\n\n{}"),
    ):
        commit = git(bare, "commit-tree", empty_tree, "-m", message)
        git(bare, "update-ref", f"refs/stigmergy/tasks/{name}", commit)
    proc = _run(clone, "task", "list", "--refresh", "--json")
    assert [t["id"] for t in json.loads(proc.stdout)] == ["ok"]
    warned = proc.stderr.strip().splitlines()
    assert len(warned) == 3
    assert all("refs/stigmergy/tasks/" in line for line in warned), warned


def test_a_batch_of_new_tasks_is_created_all_or_none_by_the_server(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, bare.as_uri(), "machine")
    _run(clone, "task", "add", "Taken", "--id", "b")
    env = open_environment(clone, None, {})
    pool = RemotePool(env.layout, env.config)
    empty = git(clone, "hash-object", "-w", "-t", "tree", "/dev/null")
    commits = {
        name: git(clone, "commit-tree", empty, "-m", f"stigmergy task {name}: pending")
        for name in ("a", "b", "c")
    }
    # Straight to the server, as a machine whose cache has not seen "b" yet would.
    refused = pool.remote.create_all("refs/stigmergy/tasks/", commits)
    assert not refused.ok
    assert "refs/stigmergy/tasks/b" in refused.rejected
    for name in ("a", "c"):
        assert (
            subprocess.run(
                ["git", "rev-parse", "-q", "--verify", f"refs/stigmergy/tasks/{name}"],
                cwd=bare,
                check=False,
                capture_output=True,
            ).returncode
            != 0
        ), f"{name} was created"
    assert git(clone, "for-each-ref", "refs/stigmergy-stage/") == ""  # staging cleaned up
    with pytest.raises(ValueError, match="not refs/stigmergy/claims/"):
        pool.remote.create_all(CLAIMS, commits)


def test_a_damaged_listing_cache_is_read_past(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, bare.as_uri(), "machine")
    for task_id in ("a", "b"):
        _run(clone, "task", "add", f"Task {task_id}", "--id", task_id)
    assert sorted(_remote_tasks(clone)) == ["a", "b"]  # fills the cache of parsed tasks
    cache = clone / ".stigmergy" / "cache" / "remote-origin.tasks.jsonl"
    lines = cache.read_text().splitlines()
    assert len(lines) == 2
    sha = json.loads(lines[0])[0]
    # A line that parses but is not a task, and a torn one: both commits are read again.
    cache.write_text(json.dumps([sha, "pending", ["not", "a", "task"]]) + "\n" + lines[1][:20])
    assert sorted(_remote_tasks(clone)) == ["a", "b"]
    cache.write_text("{torn")
    proc = _run(clone, "task", "list", "--json")
    assert sorted(t["id"] for t in json.loads(proc.stdout)) == ["a", "b"]
    assert proc.stderr == ""


def test_status_shows_the_remote_pool_and_agents_of_other_machines(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    here, there = (_clone(tmp_path, bare.as_uri(), name) for name in ("here", "there"))
    for task_id in ("a", "b"):
        _run(here, "task", "add", f"Task {task_id}", "--id", task_id)
    _run(there, "task", "claim", "a", "--agent", "far-away")
    time.sleep(2.1)  # the dashboard's cache of the remote is younger than 2 s otherwise
    snap = json.loads(_run(here, "status", "--json").stdout)
    assert snap["tasks"]["pending"] == 1
    assert snap["tasks"]["active"] == 1
    assert snap["claims"] == 1
    (agent,) = snap["agents"]
    assert (agent["agent"], agent["state"], agent["task"]) == ("far-away", "remote", "a")


def test_the_two_machines_example_runs(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parent.parent / "examples" / "two-machines.sh"
    proc = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env={
            **os.environ,
            "PATH": f"{STIGMERGY.parent}:{os.environ['PATH']}",
            "TMPDIR": str(tmp_path),
        },
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Imported 4 tasks." in proc.stdout
    assert proc.stdout.count("merged (") == 4, proc.stdout
    assert "parser by " in proc.stdout
    assert "lexer by " in proc.stdout
    assert list(tmp_path.iterdir()) == []  # it cleans up after itself


def test_a_named_claim_says_why_it_cannot_be_had(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, bare.as_uri(), "machine")
    _run(clone, "task", "add", "First", "--id", "first")
    _run(clone, "task", "add", "Second", "--id", "second", "--dep", "first")
    _run(clone, "task", "add", "Review", "--id", "review", "--role", "reviewer")
    for args, words in (
        (("second",), "task 'second' waits for first (pending)"),
        (("review",), "task 'review' is for role 'reviewer'"),
        (("nothing",), "no task 'nothing' on remote 'origin'"),
    ):
        refused = _run(clone, "task", "claim", *args, "--agent", "s1", check=False)
        assert refused.returncode == 1, refused
        assert words in refused.stderr
    _run(clone, "task", "claim", "first", "--agent", "s1")
    taken = _run(clone, "task", "claim", "first", "--agent", "s2", check=False)
    assert "task 'first' is active by agent 's1', not pending" in taken.stderr
    assert _claim_of(bare, "second") == ""


def test_the_cache_of_parsed_tasks_does_not_grow_without_bound(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, bare.as_uri(), "machine")
    _run(clone, "task", "add", "Flip-flop", "--id", "f")
    env = open_environment(clone, None, {})
    pool = RemotePool(env.layout, env.config)
    cache = clone / ".stigmergy" / "cache" / "remote-origin.tasks.jsonl"
    for k in range(80):  # each change makes a new task commit, and leaves the old one stale
        cancel = k % 2 == 0
        pool.transition(
            "f",
            allowed=("pending",) if cancel else ("cancelled",),
            to_state="cancelled" if cancel else "pending",
            change=lambda task: task,
            now=time.time(),
            verb="flip",
        )
        pool.records()
    assert len(cache.read_text().splitlines()) <= 2 + 64 + 1
    found, problems = pool.records()
    assert (sorted(found), problems) == (["f"], [])
    assert found["f"][0].state == "pending"


def test_thousands_of_cached_refs_are_packed(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    clone = _clone(tmp_path, bare.as_uri(), "machine")
    batch = tmp_path / "many.yaml"
    batch.write_text("".join(f"- {{id: t{k:04d}, title: Task {k}}}\n" for k in range(1100)))
    _run(clone, "task", "import", str(batch))
    loose = clone / ".git" / "refs" / "stigmergy-cache" / "origin" / "tasks"
    assert len(list(loose.iterdir()) if loose.exists() else []) < 1000
    packed = (clone / ".git" / "packed-refs").read_text()
    assert "refs/stigmergy-cache/origin/tasks/t1099" in packed
    assert len(_remote_tasks(clone)) == 1100


def test_an_idle_agent_looks_at_a_quiet_remote_less_and_less_often(tmp_path: Path) -> None:
    bare = _origin(tmp_path)
    here, there = (_clone(tmp_path, bare.as_uri(), name) for name in ("here", "there"))
    backend = backends.RemoteBackend(open_environment(here, None, {}), time.time)
    looks = []
    for _ in range(6):
        backend.signature()
        looks.append(backend.poll_interval)
    assert looks == [2.0, 3.0, 4.5, 6.75, 10.0, 10.0]
    _run(there, "task", "add", "Something new", "--id", "new")
    backend.signature()
    assert backend.poll_interval == backends.REMOTE_POLL  # a change: back to looking often
    backend.shutdown()
