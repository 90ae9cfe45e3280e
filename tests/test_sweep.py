from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from stigmergy_cli import claims, config, events, heartbeats, locks, signals, tasks
from stigmergy_cli.config import Config
from stigmergy_cli.heartbeats import Heartbeat
from stigmergy_cli.locks import LockInfo, Owner
from stigmergy_cli.oslock import FileLock
from stigmergy_cli.paths import Layout
from stigmergy_cli.procinfo import ProcessId
from stigmergy_cli.store import TaskStore
from stigmergy_cli.sweep import stale_reason, sweep, sweep_if_idle

from .conftest import git, left_by_crash, snapshot

HOLDER = Path(__file__).with_name("holder.py")
STIGMERGY = Path(sys.executable).parent / "stigmergy"
NOW = 1_800_000_000.0
FAST = {"agent": {"heartbeat_interval": 0.2, "lease": 1.0}}


def _add(store: TaskStore, task_id: str, **fields: object) -> None:
    doc = {"id": task_id, "title": f"Task {task_id}", **fields}
    store.add(tasks.new_task(doc, now=time.time(), created_by="test"), time.time())


def _fast_config(root: Path) -> Config:
    path = root / ".stigmergy" / "config.yaml"
    text = path.read_text().replace("heartbeat_interval: 5", "heartbeat_interval: 0.2")
    path.write_text(text.replace("lease: 60", "lease: 1"))
    return config.load(path)


@pytest.fixture
def store(env_root: Path) -> TaskStore:
    return TaskStore(Layout(env_root))


def test_a_sweep_does_not_wait_for_an_import_in_progress(store: TaskStore) -> None:
    """It holds the integration lock, which every merge waits for, while it sweeps."""
    task = tasks.new_task({"id": "late", "title": "Late"}, now=NOW, created_by="test")
    batch_dir = left_by_crash(store.layout, {"ids": ["late"], "files": {"late": task.to_yaml()}})
    cfg = config.load(store.layout.config)
    publishing = FileLock(store.layout.publish_lock)  # an import, publishing meanwhile
    publishing.acquire()
    try:
        sweeping = threading.Thread(target=sweep, args=(store, cfg, NOW))
        sweeping.start()
        sweeping.join(10)
        assert not sweeping.is_alive()  # it did not wait for the import
        assert store.locate("late") is None
        assert batch_dir.exists()
    finally:
        publishing.release()
    sweeping.join(10)
    sweep(store, cfg, NOW)
    assert store.get("late").task == task
    assert not batch_dir.exists()


# -- the staleness rule, with the clock passed in -----------------------------------------


def _info(
    owner: Owner | None, *, held: bool, mtime: float = NOW, problem: str | None = None
) -> LockInfo:
    return LockInfo("t", Path("/nonexistent"), owner, problem, mtime, held)


def _owner(**changes: object) -> Owner:
    me = ProcessId.current()
    base = Owner("alpha", "agent", me.host, me.boot_id, me.pid, me.start, NOW, 60.0, "1.x")
    return replace(base, **changes)  # type: ignore[arg-type]


def _beat(owner: Owner, last_seen: float) -> Heartbeat:
    return Heartbeat(
        owner.agent,
        owner.host,
        owner.boot_id,
        owner.pid,
        owner.pid_start,
        None,
        "t",
        "working",
        NOW,
        last_seen,
    )


def test_a_live_local_holder_is_judged_by_its_heartbeat() -> None:
    owner = _owner()
    assert stale_reason(_info(owner, held=True), _beat(owner, NOW + 100), NOW + 150, 10) is None
    reason = stale_reason(_info(owner, held=True), _beat(owner, NOW + 100), NOW + 161, 10)
    assert reason is not None
    assert "no heartbeat from agent 'alpha' for 61s (lease 60s)" in reason


def test_a_local_holder_whose_flock_is_free_is_dead_at_once() -> None:
    reason = stale_reason(_info(_owner(), held=False), None, NOW + 1, 10)
    assert reason is not None
    assert "is gone" in reason


def test_pid_reuse_does_not_fool_the_check() -> None:
    owner = _owner(pid_start=(ProcessId.current().start or 0) + 12345)
    reason = stale_reason(_info(owner, held=True), None, NOW + 1, 10)
    assert reason is not None
    assert "pid reused" in reason


def test_another_host_or_boot_is_judged_by_lease_only() -> None:
    for owner in (_owner(host="elsewhere"), _owner(boot_id="another-boot")):
        assert stale_reason(_info(owner, held=False), None, NOW + 59, 10) is None
        assert stale_reason(_info(owner, held=False), None, NOW + 61, 10) is not None


def test_a_restarted_agent_does_not_keep_its_predecessors_claim() -> None:
    owner = _owner(host="elsewhere")
    newer_process = replace(_beat(owner, NOW + 500), pid=owner.pid + 1)
    assert stale_reason(_info(owner, held=False), newer_process, NOW + 501, 10) is not None


def test_session_claims_live_as_long_as_their_agent_calls() -> None:
    owner = _owner(liveness="session", lease=1800.0, pid=999_999)
    calls = replace(_beat(owner, NOW + 1000), pid=4242, kind="session")
    assert stale_reason(_info(owner, held=False), calls, NOW + 2700, 10) is None
    assert stale_reason(_info(owner, held=False), calls, NOW + 2801, 10) is not None


def test_a_lock_without_a_readable_owner_gets_a_grace_period() -> None:
    assert stale_reason(_info(None, held=False, problem="no owner.json"), None, NOW + 5, 10) is None
    assert (
        stale_reason(_info(None, held=True, problem="no owner.json"), None, NOW + 500, 10) is None
    )
    reason = stale_reason(_info(None, held=False, problem="no owner.json"), None, NOW + 11, 10)
    assert reason == "no owner.json for 11s"


# -- the sweep on a real environment --------------------------------------------------------


def _stale_claim(store: TaskStore, task_id: str, agent: str = "ghost") -> None:
    """A claim whose holder is long dead: an agent on another machine that stopped beating."""
    owner = Owner(agent, "agent", "elsewhere", "b", 1, None, time.time() - 3600, 60.0, "1.dead")
    claim = locks.acquire(store.layout, task_id, owner)
    assert claim is not None
    claim.close()
    record = store.get(task_id)
    store.write(record, record.task, "active")


def test_a_dead_claim_is_requeued_once_with_an_attempt_counted(store: TaskStore) -> None:
    cfg = Config()
    _add(store, "t")
    _stale_claim(store, "t")
    report = sweep(store, cfg, time.time())
    assert [(a.kind, a.target, a.to_state, a.agent) for a in report.actions] == [
        ("reclaimed", "t", "pending", "ghost")
    ]
    record = store.get("t")
    assert (record.state, record.task.attempts) == ("pending", 1)
    field = signals.Field(store.layout, cfg.pressure)
    assert field.read(["task:t"], time.time()) == pytest.approx(
        cfg.pressure.signal_failure, rel=0.01
    )
    assert locks.inspect(store.layout, "t") is None
    tombs = [p.name for p in store.layout.locks.iterdir() if p.name.startswith(".tomb-t-swept")]
    assert len(tombs) == 1
    assert sweep(store, cfg, time.time()).actions == []
    swept = [e for e in events.read(store.layout.events) if e["event"] == "swept"]
    assert len(swept) == 1


def test_the_last_attempt_goes_to_failed(store: TaskStore) -> None:
    _add(store, "t", max_attempts=1)
    _stale_claim(store, "t")
    (action,) = sweep(store, Config(), time.time()).actions
    assert action.to_state == "failed"
    assert store.get("t").state == "failed"


def test_dry_run_reports_and_changes_nothing(store: TaskStore) -> None:
    _add(store, "t")
    _stale_claim(store, "t")
    (store.layout.state_dir("pending") / "junk.yaml").write_text("[")
    old = time.time() - 3600
    os.utime(store.layout.state_dir("pending") / "junk.yaml", (old, old))
    before = snapshot(store.layout.root)
    report = sweep(store, Config(), time.time() + 60, dry_run=True)
    assert {a.kind for a in report.actions} == {"reclaimed", "quarantined"}
    assert snapshot(store.layout.root) == before


def test_an_active_task_without_a_claim_is_put_back(store: TaskStore) -> None:
    _add(store, "t")
    record = store.get("t")
    store.write(record, record.task, "active")  # as if the holder crashed after its lock went
    (action,) = sweep(store, Config(), time.time()).actions
    assert (action.kind, action.to_state) == ("reconciled", "pending")
    assert store.get("t").task.attempts == 1


def test_a_stale_lock_on_a_pending_task_is_just_removed(store: TaskStore) -> None:
    _add(store, "t")
    owner = Owner("ghost", "agent", "elsewhere", "b", 1, None, time.time() - 3600, 60.0, "1.dead")
    claim = locks.acquire(store.layout, "t", owner)
    assert claim is not None
    claim.close()
    (action,) = sweep(store, Config(), time.time()).actions
    assert action.kind == "lock_removed"
    assert (store.get("t").state, store.get("t").task.attempts) == ("pending", 0)


def test_a_live_claim_is_left_alone(store: TaskStore) -> None:
    _add(store, "t")
    claimed = claims.claim_best(store, Config(), "alpha", role=None, now=time.time())
    report = sweep(store, Config(), time.time())
    assert (report.actions, report.live_locks) == ([], 1)
    claimed.claim.close()


def test_an_agents_sweep_checks_live_work_and_leaves_finished_tasks_to_the_full_sweep(
    store: TaskStore,
) -> None:
    later = time.time() + 60
    for state in ("pending", "done"):
        (store.layout.state_dir(state) / "bad.yaml").write_text("title: [")
    in_passing = sweep_if_idle(store, Config(), later)
    assert in_passing is not None
    assert [a.target for a in in_passing.actions] == ["tasks/pending/bad.yaml"]
    assert (store.layout.state_dir("done") / "bad.yaml").exists()
    assert [a.target for a in sweep(store, Config(), later).actions] == ["tasks/done/bad.yaml"]


def test_unreadable_files_are_quarantined_once_they_are_old(store: TaskStore) -> None:
    pending = store.layout.state_dir("pending")
    (pending / "old.yaml").write_text("title: [")
    (action,) = sweep(store, Config(), time.time() + 60).actions  # a minute later
    assert (action.kind, action.target) == ("quarantined", "tasks/pending/old.yaml")
    assert "invalid YAML" in action.reason
    (kept,) = store.layout.corrupt.iterdir()
    assert kept.read_text() == "title: ["
    assert kept.name.startswith("pending.old.yaml.")
    (pending / "fresh.yaml").write_text("title: [")  # maybe a person saving it right now
    assert sweep(store, Config(), time.time()).actions == []
    assert (pending / "fresh.yaml").exists()


def test_litter_from_crashes_is_cleaned(store: TaskStore) -> None:
    old = time.time() - 2 * 86400
    stage = store.layout.locks / ".stage-x-dead"
    stage.mkdir()
    (stage / "owner.lock").touch()
    live_stage = store.layout.locks / ".stage-y-live"
    live_stage.mkdir()
    holder = FileLock(live_stage / "owner.lock")
    assert holder.try_acquire()
    tomb = store.layout.locks / ".tomb-z-swept-1"
    tomb.mkdir()
    temp = store.layout.state_dir("pending") / ".t.yaml.abcd.tmp"
    temp.write_text("half")
    for path in (stage, live_stage, tomb, temp):
        os.utime(path, (old, old))
    # ctime cannot be set back: judge "now" two days ahead instead.
    report = sweep(store, Config(), time.time() + 2 * 86400 + 60)
    cleaned = sorted(a.target for a in report.actions if a.kind == "cleaned")
    assert cleaned == [
        "locks/.stage-x-dead",
        "locks/.tomb-z-swept-1",
        "tasks/pending/.t.yaml.abcd.tmp",
    ]
    assert live_stage.exists()
    holder.release()


def test_corrupt_owner_and_heartbeat_files_never_crash_the_sweep(store: TaskStore) -> None:
    for n, content in enumerate([b"", b"{", b"[1]", b'{"agent": 3}', b"\xff\xfe", b"null"]):
        _add(store, f"t{n}")
        lock_dir = store.layout.lock_dir(f"t{n}")
        lock_dir.mkdir()
        (lock_dir / "owner.json").write_bytes(content)
        (store.layout.agents / f"a{n}.json").write_bytes(content)
        old = time.time() - 3600
        os.utime(lock_dir, (old, old))
    report = sweep(store, Config(), time.time())
    assert sorted(a.target for a in report.actions) == [f"t{n}" for n in range(6)]
    assert all(a.kind == "lock_removed" for a in report.actions)


# -- real processes ---------------------------------------------------------------------------


def _start_holder(root: Path, agent: str, task_id: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(HOLDER), str(root), agent, task_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    token = json.loads(proc.stdout.readline())["token"]
    return proc, token


def _ask(proc: subprocess.Popen[str], command: str) -> dict[str, object]:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())  # type: ignore[no-any-return]


def test_kill_9_of_a_holder_returns_its_task_at_once_and_exactly_once(store: TaskStore) -> None:
    _add(store, "t")
    proc, _token = _start_holder(store.layout.root, "alpha", "t")
    assert store.get("t").state == "active"
    proc.kill()
    proc.wait()
    cfg = config.load(store.layout.config)
    (action,) = sweep(store, cfg, time.time()).actions
    assert action.kind == "reclaimed"
    assert "is gone" in action.reason
    assert (store.get("t").state, store.get("t").task.attempts) == ("pending", 1)
    assert sweep(store, cfg, time.time()).actions == []


def _killed_at(store: TaskStore, step: str = "land-and-die") -> Path:
    """Task t, whose holder was killed at `step` of its integration (see tests/holder.py):
    by default once its work merged, before recording it as done."""
    root = store.layout.root
    _add(store, "t")
    proc, _token = _start_holder(root, "alpha", "t")
    assert proc.stdin is not None
    proc.stdin.write(f"{step}\n")
    proc.stdin.flush()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    return root


def test_a_holder_killed_once_its_result_is_merged_is_done_not_run_again(
    store: TaskStore,
) -> None:
    root = _killed_at(store)
    trailers = git(root, "log", "main", "--format=%(trailers:key=Stigmergy-Task,valueonly)")
    assert trailers.split() == ["t"]  # merged, and the task still active: the crash's window
    assert store.get("t").state == "active"
    cfg = config.load(store.layout.config)
    (action,) = sweep(store, cfg, time.time()).actions
    assert (action.kind, action.to_state) == ("landed", "done")
    record = store.get("t")
    assert record.state == "done"
    assert record.task.result is not None
    assert (record.task.result["merged"], record.task.result["agent"]) == (True, "alpha")
    assert record.task.result["commit"] == git(root, "rev-parse", "refs/stigmergy/results/t")
    assert locks.inspect(store.layout, "t") is None
    merged = [e for e in events.read(store.layout.events) if e["event"] == events.MERGED]
    assert [(e["task"], e["agent"]) for e in merged] == [("t", "alpha")]
    assert sweep(store, cfg, time.time()).actions == []
    assert (root / "t.txt").read_text() == "work\n"  # the checkout was brought forward
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""


@pytest.mark.parametrize("in_the_way", [False, True], ids=["merged", "deferred"])
def test_a_holder_killed_once_its_outcome_is_recorded_is_finished_by_the_sweep(
    store: TaskStore, in_the_way: bool
) -> None:
    if in_the_way:  # the user's own t.txt, which the merge must not overwrite
        (store.layout.root / "t.txt").write_text("mine\n")
    root = _killed_at(store, "record-and-die")
    outcome = "deferred" if in_the_way else "merged"
    left = store.get("t")  # the crash's window: the outcome written, the task not moved
    assert (left.state, (left.task.result or {}).get("outcome")) == ("active", outcome)
    cfg = config.load(store.layout.config)
    (action,) = sweep(store, cfg, time.time()).actions
    assert (action.kind, action.agent, action.to_state) == ("finished", "alpha", "done")
    record = store.get("t")
    assert record.state == "done"
    assert record.task.result == left.task.result  # the holder's own record, kept whole
    assert record.task.attempts == 0
    assert locks.inspect(store.layout, "t") is None
    assert sweep(store, cfg, time.time()).actions == []
    trailers = git(root, "log", "main", "--format=%(trailers:key=Stigmergy-Task,valueonly)")
    if in_the_way:  # still waiting for `stigmergy integrate`, which now finds it
        assert trailers.split() == []
        (root / "t.txt").unlink()
        subprocess.run([str(STIGMERGY), "integrate"], cwd=root, check=True)
        assert (store.get("t").task.result or {})["merged"] is True
    assert git(
        root, "log", "main", "--format=%(trailers:key=Stigmergy-Task,valueonly)"
    ).split() == ["t"]
    assert (root / "t.txt").read_text() == "work\n"


def test_a_holder_killed_once_its_merge_conflicted_is_done_and_waits_for_the_resolution(
    store: TaskStore,
) -> None:
    root = _killed_at(store, "conflict-and-die")
    assert store.get("t").state == "active"  # the conflict task made, the task not told
    assert store.get("t.conflict").state == "pending"
    cfg = config.load(store.layout.config)
    (action,) = sweep(store, cfg, time.time()).actions
    assert (action.kind, action.agent, action.to_state) == ("conflicted", "alpha", "done")
    result = store.get("t").task.result or {}
    assert (result["outcome"], result["merged"], result["conflict_task"]) == (
        "conflict",
        False,
        "t.conflict",
    )
    assert result["commit"] == git(root, "rev-parse", "refs/stigmergy/results/t")
    assert store.get("t").task.attempts == 0  # not run again: its work waits in t.conflict
    assert locks.inspect(store.layout, "t") is None
    assert sweep(store, cfg, time.time()).actions == []


def test_a_retried_task_is_not_taken_for_an_earlier_attempt_that_merged(
    store: TaskStore,
) -> None:
    root = _killed_at(store)
    # Someone tidies by hand instead of letting the sweep record the merge: the dead claim
    # deleted, the task cancelled, then retried.
    shutil.rmtree(store.layout.lock_dir("t"))
    for verb in ("cancel", "retry"):
        subprocess.run([str(STIGMERGY), "task", verb, "t"], cwd=root, check=True)
    time.sleep(1.1)  # the next claim comes a second after that commit (git's whole seconds)
    proc, _token = _start_holder(root, "beta", "t")
    proc.kill()
    proc.wait()
    cfg = config.load(store.layout.config)
    (action,) = sweep(store, cfg, time.time()).actions
    assert (action.kind, action.agent, action.to_state) == ("reclaimed", "beta", "pending")


@pytest.mark.slow
def test_a_paused_holder_cannot_act_after_its_claim_was_taken(store: TaskStore) -> None:
    cfg = _fast_config(store.layout.root)
    _add(store, "t")
    proc, _token = _start_holder(store.layout.root, "alpha", "t")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(cfg.lease * 1.6)
        (action,) = sweep(store, cfg, time.time()).actions
        assert (action.kind, action.agent) == ("reclaimed", "alpha")
        beta = claims.claim_best(store, cfg, "beta", role=None, now=time.time())
    finally:
        os.kill(proc.pid, signal.SIGCONT)

    def state() -> dict[str, bytes]:  # everything but heartbeats, which the holder still writes
        return {k: v for k, v in snapshot(store.layout.root).items() if not k.startswith("agents/")}

    before = state()
    for command in ("release", "fail", "complete"):
        answer = _ask(proc, command)
        assert answer.get("refused") == command, answer
    assert _ask(proc, "lost") == {"lost": True}
    assert state() == before
    record = store.get("t")
    assert (record.state, record.task.attempts) == ("active", 1)
    info = locks.inspect(store.layout, "t")
    assert info is not None
    assert info.owner == beta.claim.owner
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=10)
    beta.claim.close()


@pytest.mark.slow
def test_four_sweepers_at_once_reclaim_a_dead_claim_once(store: TaskStore) -> None:
    _add(store, "t")
    proc, _token = _start_holder(store.layout.root, "alpha", "t")
    proc.kill()
    proc.wait()
    sweepers = [
        subprocess.Popen(
            [str(STIGMERGY), "sweep", "--json"],
            cwd=store.layout.root,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    reports = [json.loads(p.communicate()[0]) for p in sweepers]
    assert all(p.returncode == 0 for p in sweepers)
    reclaimed = [a for r in reports for a in r["actions"] if a["kind"] == "reclaimed"]
    assert len(reclaimed) == 1
    assert store.get("t").task.attempts == 1


def test_heartbeats_are_written_in_the_background_and_report_gaps(store: TaskStore) -> None:
    layout = store.layout
    clock = [100.0]
    beat = Heartbeat.new("alpha", role="dev", now=time.time())
    heart = heartbeats.Heartbeater(
        layout, beat, interval=0.05, lease=1.0, monotonic=lambda: clock[0]
    )
    heart.start()
    time.sleep(0.4)
    first = heartbeats.read(layout, "alpha")
    assert first is not None
    assert first.seq >= 3
    assert not heart.lost
    clock[0] += 0.6  # a pause longer than half the lease...
    heart.beat()  # ...then heartbeats resume: the claim is still to be considered lost
    assert heart.lost
    heart.reset()
    assert not heart.lost
    heart.stop()
    last = heartbeats.read(layout, "alpha")
    assert last is not None
    assert last.status == "stopped"
    assert heartbeats.liveness(last, time.time(), 60) == heartbeats.GONE


def test_a_heartbeat_that_cannot_be_written_is_noticed(store: TaskStore) -> None:
    layout = store.layout
    clock = [0.0]
    heart = heartbeats.Heartbeater(
        layout,
        Heartbeat.new("alpha", role=None, now=0),
        interval=5,
        lease=10,
        monotonic=lambda: clock[0],
    )
    assert heart.beat()
    shutil.rmtree(layout.agents)
    layout.agents.write_text("not a directory")  # every write now fails
    clock[0] = 4.0
    assert not heart.beat()
    assert not heart.lost
    clock[0] = 5.5
    assert heart.lost
    assert heart.errors == 1


def test_a_task_seen_in_two_states_is_never_quarantined(store: TaskStore) -> None:
    # A claim moving a task between the scan's reads of pending/ and active/ shows it twice;
    # the sweep must not take the real one away (found by the 8-agent benchmark).
    _add(store, "moving")
    record = store.get("moving")
    (store.layout.state_dir("active") / "moving.yaml").write_bytes(record.path.read_bytes())
    old = time.time() - 3600
    for state in ("pending", "active"):
        os.utime(store.layout.task_file(state, "moving"), (old, old))
    report = sweep(store, Config(), time.time() + 3600)
    assert [a for a in report.actions if a.kind == "quarantined"] == []
    assert store.layout.task_file("active", "moving").exists()


def test_a_recently_renamed_unreadable_file_waits_for_the_grace_period(store: TaskStore) -> None:
    broken = store.layout.state_dir("pending") / "broken.yaml"
    broken.write_text("title: [")
    old = time.time() - 3600
    os.utime(broken, (old, old))  # old content, but its ctime is now (as after a rename)
    assert sweep(store, Config(), time.time()).actions == []
    (action,) = sweep(store, Config(), time.time() + 60).actions
    assert action.kind == "quarantined"


def test_the_sweep_does_the_housekeeping_agents_leave_to_it(store: TaskStore) -> None:
    # Agents commit without git's auto-maintenance; the sweep asks for `gc --auto` instead,
    # which acts at git's own thresholds: here, more than one pack (in the foreground, to see).
    root = store.layout.root
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "config", "gc.autoPackLimit", "1"], check=True)
    subprocess.run([*git, "config", "gc.autoDetach", "false"], check=True)
    for k in range(3):
        (root / f"f{k}.txt").write_text(f"{k}\n")
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "-c", "maintenance.auto=false", "commit", "-qm", f"c{k}"], check=True)
        subprocess.run([*git, "repack", "-q"], check=True)  # one more pack

    def packs() -> int:
        counts = subprocess.run(
            [*git, "count-objects", "-v"], check=True, capture_output=True, text=True
        ).stdout
        return int(counts.split("packs: ", 1)[1].split()[0])

    assert packs() >= 3
    sweep(store, Config(), time.time())
    assert packs() == 1
