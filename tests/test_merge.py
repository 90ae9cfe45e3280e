"""Integration into the target: fast-forward, three-way merge, conflicts, fencing, checkouts."""

from __future__ import annotations

import multiprocessing
import subprocess
import time
from pathlib import Path

import pytest

from stigmergy_cli import claims, events, gitops, locks, merge, results, sweep, tasks, worktrees
from stigmergy_cli.claims import Claimed
from stigmergy_cli.environment import Environment, open_environment
from stigmergy_cli.errors import GitError
from stigmergy_cli.store import TaskRecord, TaskStore

from .conftest import git


@pytest.fixture
def env(env_root: Path) -> Environment:
    return open_environment(env_root, None, {})


def _claim(env: Environment, task_id: str, agent: str, **fields: object) -> Claimed:
    doc = {"id": task_id, "title": f"Task {task_id}", **fields}
    env.store.add(tasks.new_task(doc, now=time.time(), created_by="t"), time.time())
    return claims.claim_named(env.store, env.config, agent, task_id, role=None, now=time.time())


def _work(env: Environment, claimed: Claimed, agent: str, files: dict[str, str]) -> str | None:
    worktree = results.prepare(env.layout, env.config, agent, claimed.record.task, time.time())
    for name, text in files.items():
        (worktree / name).write_text(text)
    return results.commit(env.layout, env.config, worktree, claimed.record.task, agent)


def _land(env: Environment, claimed: Claimed, agent: str, commit: str | None) -> merge.Outcome:
    outcome = merge.integrate(
        env.store,
        env.config,
        task_id=claimed.record.task.id,
        agent=agent,
        token=claimed.token,
        result=commit,
        now=time.time(),
    )
    claimed.claim.close()
    return outcome


def test_a_result_built_on_the_tip_fast_forwards_the_checkout(env: Environment) -> None:
    root = env.layout.root
    before = gitops.rev_parse(root, "main")
    claimed = _claim(env, "t", "alpha")
    commit = _work(env, claimed, "alpha", {"new.txt": "hello\n"})
    assert commit is not None
    message = git(root, "log", "-1", "--format=%B", commit)
    assert message.endswith("Stigmergy-Task: t\nStigmergy-Agent: alpha")
    outcome = _land(env, claimed, "alpha", commit)
    assert (outcome.kind, outcome.merge_commit) == ("merged", commit)
    assert gitops.rev_parse(root, "main") == commit
    assert git(root, "rev-parse", f"{commit}^") == before
    assert (root / "new.txt").read_text() == "hello\n"  # the user's checkout moved with it
    assert gitops.rev_parse(root, "refs/stigmergy/results/t") == commit
    record = env.store.get("t")
    assert record.state == "done"
    assert record.task.result is not None
    assert record.task.result["merged"] is True
    assert env.store.layout.lock_dir("t").exists() is False


def test_results_built_on_an_older_tip_are_merged_three_ways(env: Environment) -> None:
    root = env.layout.root
    first = _claim(env, "a", "alpha")
    second = _claim(env, "b", "beta")
    commit_a = _work(env, first, "alpha", {"a.txt": "a\n"})
    commit_b = _work(env, second, "beta", {"b.txt": "b\n"})
    assert _land(env, first, "alpha", commit_a).kind == "merged"
    outcome = _land(env, second, "beta", commit_b)
    assert outcome.kind == "merged"
    assert outcome.merge_commit not in (commit_a, commit_b)
    parents = git(root, "rev-list", "--parents", "-n1", str(outcome.merge_commit)).split()[1:]
    assert parents == [commit_a, commit_b]
    assert (root / "a.txt").exists()
    assert (root / "b.txt").exists()
    assert git(root, "status", "--porcelain", "--untracked-files=no") == ""


def test_no_change_is_a_valid_result(env: Environment) -> None:
    claimed = _claim(env, "t", "alpha")
    assert _work(env, claimed, "alpha", {}) is None
    before = gitops.rev_parse(env.layout.root, "main")
    assert _land(env, claimed, "alpha", None).kind == "unchanged"
    assert gitops.rev_parse(env.layout.root, "main") == before
    assert env.store.get("t").state == "done"


def _conflicting_results(env: Environment) -> tuple[str | None, str | None, merge.Outcome]:
    """Tasks a and b change the same line: a merges, b conflicts (b.conflict is created)."""
    root = env.layout.root
    (root / "shared.txt").write_text("one\ntwo\nthree\n")
    git(root, "add", "shared.txt")
    git(root, "commit", "-q", "-m", "shared")
    first = _claim(env, "a", "alpha")
    second = _claim(env, "b", "beta", verify="grep -q 'from b' shared.txt")
    commit_a = _work(env, first, "alpha", {"shared.txt": "one\nfrom a\nthree\n"})
    commit_b = _work(env, second, "beta", {"shared.txt": "one\nfrom b\nthree\n"})
    assert _land(env, first, "alpha", commit_a).kind == "merged"
    return commit_a, commit_b, _land(env, second, "beta", commit_b)


def test_a_conflict_becomes_a_task_and_its_resolution_completes_the_original(
    env: Environment,
) -> None:
    root = env.layout.root
    commit_a, commit_b, outcome = _conflicting_results(env)
    assert (outcome.kind, outcome.files, outcome.conflict_task) == (
        "conflict",
        ("shared.txt",),
        "b.conflict",
    )
    assert gitops.rev_parse(root, "main") == commit_a
    original = env.store.get("b")
    assert original.state == "done"
    assert original.task.result is not None
    assert original.task.result["merged"] is False
    conflict = env.store.get("b.conflict")
    assert (conflict.task.type, conflict.task.priority) == ("merge_conflict", 95)
    assert conflict.task.verify == "grep -q 'from b' shared.txt"
    assert conflict.task.extra["conflict"] == {
        "task": "b",
        "theirs": commit_b,
        "files": ["shared.txt"],
    }

    resolver = claims.claim_best(env.store, env.config, "gamma", role=None, now=time.time())
    assert resolver.record.task.id == "b.conflict"
    worktree = results.prepare(env.layout, env.config, "gamma", resolver.record.task, time.time())
    assert worktrees.merge_in_progress(worktree)
    assert results.unresolved(worktree, resolver.record.task) == ["shared.txt"]
    (worktree / "shared.txt").write_text("one\nfrom a\nfrom b\nthree\n")
    assert results.unresolved(worktree, resolver.record.task) == []
    resolution = results.commit(env.layout, env.config, worktree, resolver.record.task, "gamma")
    assert resolution is not None
    assert git(root, "rev-list", "--parents", "-n1", resolution).split()[1:] == [commit_a, commit_b]
    assert _land(env, resolver, "gamma", resolution).kind == "merged"
    assert (root / "shared.txt").read_text() == "one\nfrom a\nfrom b\nthree\n"
    done = env.store.get("b").task.result
    assert done is not None
    assert (done["merged"], done["merged_by"]) == (True, "b.conflict")


def test_a_resolution_deferred_by_local_changes_completes_the_original_once_integrated(
    env: Environment,
) -> None:
    root = env.layout.root
    _conflicting_results(env)
    resolver = claims.claim_best(env.store, env.config, "gamma", role=None, now=time.time())
    worktree = results.prepare(env.layout, env.config, "gamma", resolver.record.task, time.time())
    (worktree / "shared.txt").write_text("one\nfrom a\nfrom b\nthree\n")
    resolution = results.commit(env.layout, env.config, worktree, resolver.record.task, "gamma")
    (root / "shared.txt").write_text("the user's unsaved edit\n")
    assert _land(env, resolver, "gamma", resolution).kind == "deferred"
    assert (env.store.get("b").task.result or {})["merged"] is False
    git(root, "checkout", "--", "shared.txt")
    assert merge.finish_deferred(env.store, env.config, "b.conflict", time.time()).merged
    done = env.store.get("b").task.result or {}
    assert (done["merged"], done["merged_by"]) == (True, "b.conflict")


class _Crash(BaseException):
    """The process dying at an instant chosen by the test."""


@pytest.mark.parametrize("dies_writing", ["b", "b.conflict"])  # the original, then its own
def test_a_resolution_whose_agent_died_while_recording_it_is_finished_by_the_sweep(
    env: Environment, monkeypatch: pytest.MonkeyPatch, dies_writing: str
) -> None:
    _conflicting_results(env)
    resolver = claims.claim_best(env.store, env.config, "gamma", role=None, now=time.time())
    worktree = results.prepare(env.layout, env.config, "gamma", resolver.record.task, time.time())
    (worktree / "shared.txt").write_text("one\nfrom a\nfrom b\nthree\n")
    resolution = results.commit(env.layout, env.config, worktree, resolver.record.task, "gamma")
    write = TaskStore.write

    def dies_recording_the_resolution(
        self: TaskStore, record: TaskRecord, task: tasks.Task, to_state: str | None = None
    ) -> TaskRecord:
        if task.id == dies_writing:
            raise _Crash
        return write(self, record, task, to_state)

    monkeypatch.setattr(TaskStore, "write", dies_recording_the_resolution)
    with pytest.raises(_Crash):
        _land(env, resolver, "gamma", resolution)  # the target moved, then the agent died
    resolver.claim.close()  # and with it its flock
    monkeypatch.undo()
    assert env.store.get("b.conflict").state == "active"
    (action,) = sweep.sweep(env.store, env.config, time.time()).actions
    assert (action.kind, action.target, action.to_state) == ("landed", "b.conflict", "done")
    assert env.store.get("b.conflict").state == "done"
    original = env.store.get("b").task.result
    assert original is not None
    assert (original["merged"], original["merged_by"]) == (True, "b.conflict")
    merged = [e["task"] for e in events.read(env.layout.events) if e["event"] == events.MERGED]
    assert merged.count("b") == 1


def test_a_claim_swept_between_the_merge_and_its_record_is_recorded_once(
    env: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A self-driving session's claim, so that the sweep can judge it stale by the clock.
    env.store.add(tasks.new_task({"id": "t", "title": "T"}, now=time.time(), created_by="t"), 0)
    claimed = claims.claim_named(
        env.store, env.config, "alpha", "t", role=None, now=time.time(), session=True
    )
    commit = _work(env, claimed, "alpha", {"t.txt": "t\n"})
    finish = merge._finish
    swept = []

    def paused_past_its_lease(*args: object, **kwargs: object) -> None:
        later = time.time() + 10 * env.config.session_lease
        swept.extend(sweep.sweep(env.store, env.config, later).actions)
        finish(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(merge, "_finish", paused_past_its_lease)
    outcome = _land(env, claimed, "alpha", commit)
    assert outcome.kind == "merged"
    assert [(a.kind, a.target) for a in swept] == [("landed", "t")]
    record = env.store.get("t")
    assert record.state == "done"
    assert record.task.result is not None
    assert record.task.result["merged"] is True
    merged = [e["task"] for e in events.read(env.layout.events) if e["event"] == events.MERGED]
    assert merged == ["t"]
    assert locks.inspect(env.layout, "t") is None


def test_a_swept_agent_cannot_land_and_its_work_is_salvaged(env: Environment) -> None:
    root = env.layout.root
    claimed = _claim(env, "t", "alpha")
    commit = _work(env, claimed, "alpha", {"late.txt": "late\n"})
    # The claim is broken and given to beta while alpha was away.
    env.layout.lock_dir("t").rename(env.layout.locks / ".tomb-t-test")
    record = env.store.get("t")
    env.store.write(record, record.task, "pending")
    beta = claims.claim_named(env.store, env.config, "beta", "t", role=None, now=time.time())
    before = gitops.rev_parse(root, "main")
    outcome = _land(env, claimed, "alpha", commit)
    assert outcome.kind == "fenced"
    assert gitops.rev_parse(root, "main") == before
    assert gitops.rev_parse(root, f"refs/stigmergy/salvage/t/{claimed.token}") == commit
    assert env.store.get("t").state == "active"  # still beta's
    beta.claim.close()


def test_local_changes_in_the_way_defer_the_merge_and_are_never_touched(env: Environment) -> None:
    root = env.layout.root
    (root / "notes.txt").write_text("committed\n")
    git(root, "add", "notes.txt")
    git(root, "commit", "-q", "-m", "notes")
    claimed = _claim(env, "t", "alpha")
    commit = _work(env, claimed, "alpha", {"notes.txt": "from the agent\n"})
    (root / "notes.txt").write_text("the user's unsaved edit\n")
    (root / "scratch.txt").write_text("untracked\n")
    before = gitops.rev_parse(root, "main")
    outcome = _land(env, claimed, "alpha", commit)
    assert outcome.kind == "deferred"
    assert gitops.rev_parse(root, "main") == before
    assert (root / "notes.txt").read_text() == "the user's unsaved edit\n"
    result = env.store.get("t").task.result
    assert result is not None
    assert (result["merged"], result["outcome"]) == (False, "deferred")
    assert merge.deferred(env.store, time.time()) == ["t"]
    git(root, "checkout", "--", "notes.txt")
    assert merge.finish_deferred(env.store, env.config, "t", time.time()).kind == "merged"
    assert (root / "notes.txt").read_text() == "from the agent\n"
    assert (root / "scratch.txt").read_text() == "untracked\n"
    assert merge.deferred(env.store, time.time()) == []


# git's messages are read in places; a user's LANGUAGE would otherwise translate them.
@pytest.mark.parametrize("language", [None, "de"])
def test_a_locked_index_in_the_checkout_defers_the_merge_and_says_so(
    env: Environment, monkeypatch: pytest.MonkeyPatch, language: str | None
) -> None:
    if language:
        monkeypatch.setenv("LANGUAGE", language)
    root = env.layout.root
    claimed = _claim(env, "t", "alpha")
    commit = _work(env, claimed, "alpha", {"feature.txt": "x\n"})
    lock = root / ".git" / "index.lock"
    lock.write_text("")  # what a git command killed in the user's checkout leaves behind
    before = gitops.rev_parse(root, "main")
    outcome = _land(env, claimed, "alpha", commit)
    assert outcome.kind == "deferred"
    assert f"where {lock} exists" in outcome.detail
    assert gitops.rev_parse(root, "main") == before
    assert lock.exists()  # the user's to remove: a git command of theirs may hold it
    lock.unlink()
    assert merge.finish_deferred(env.store, env.config, "t", time.time()).kind == "merged"
    assert (root / "feature.txt").read_text() == "x\n"


def test_nothing_to_commit_is_understood_in_any_language(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANGUAGE", "de")
    assert gitops.commit_all(repo, "nothing\n", gitops.identity(repo)) is None


def test_unrelated_local_changes_survive_the_fast_forward(env: Environment) -> None:
    root = env.layout.root
    (root / "README.md").write_text("edited by the user, not committed\n")
    claimed = _claim(env, "t", "alpha")
    commit = _work(env, claimed, "alpha", {"feature.txt": "x\n"})
    assert _land(env, claimed, "alpha", commit).kind == "merged"
    assert (root / "README.md").read_text() == "edited by the user, not committed\n"
    assert (root / "feature.txt").exists()


def test_a_target_not_checked_out_is_moved_by_compare_and_swap(env_root: Path) -> None:
    git(env_root, "branch", "trunk")
    config = env_root / ".stigmergy" / "config.yaml"
    config.write_text(config.read_text().replace("target: main", "target: trunk"))
    env = open_environment(env_root, None, {})
    claimed = _claim(env, "t", "alpha")
    commit = _work(env, claimed, "alpha", {"x.txt": "x\n"})
    assert _land(env, claimed, "alpha", commit).kind == "merged"
    assert gitops.rev_parse(env_root, "trunk") == commit
    assert not (env_root / "x.txt").exists()  # main's checkout is not trunk's


def test_conflict_ids_are_deterministic_and_valid() -> None:
    assert merge.conflict_task_id("fix-login") == "fix-login.conflict"
    long_id = "x" * 64
    derived = merge.conflict_task_id(long_id)
    assert derived == merge.conflict_task_id(long_id)
    assert tasks.validate_id(derived) == derived


def _ensure(root: str, agent: str) -> str:
    from stigmergy_cli.paths import Layout

    return str(worktrees.ensure(Layout(Path(root)), agent, "main"))


@pytest.mark.slow
def test_many_agents_create_their_worktrees_at_once(env_root: Path) -> None:
    with multiprocessing.get_context("fork").Pool(8) as pool:
        paths = pool.starmap(_ensure, [(str(env_root), f"agent{n}") for n in range(12)])
    assert len(set(paths)) == 12
    listed = gitops.worktrees(env_root)
    branches = {w.get("branch") for w in listed}
    assert {f"refs/heads/stigmergy/agent{n}" for n in range(12)} <= branches
    assert (
        "could not lock"
        not in subprocess.run(
            ["git", "worktree", "list"], cwd=env_root, capture_output=True, text=True, check=True
        ).stderr
    )


def test_a_foreign_directory_is_not_taken_over(env_root: Path) -> None:
    from stigmergy_cli.paths import Layout

    layout = Layout(env_root)
    squatter = layout.workspace("alpha")
    squatter.mkdir(parents=True)
    (squatter / "precious.txt").write_text("mine")
    with pytest.raises(worktrees.WorkspaceError, match="is not a git worktree"):
        worktrees.ensure(layout, "alpha", "main")
    assert (squatter / "precious.txt").read_text() == "mine"


def test_leftovers_are_kept_before_a_reset(env: Environment) -> None:
    root = env.layout.root
    first = _claim(env, "a", "alpha")
    worktree = results.prepare(env.layout, env.config, "alpha", first.record.task, time.time())
    (worktree / "unfinished.txt").write_text("half done\n")
    claims.release(env.store, env.config, "alpha", "a", token=first.token, now=time.time())
    first.claim.close()
    second = _claim(env, "b", "alpha")
    results.prepare(env.layout, env.config, "alpha", second.record.task, time.time())
    assert not (worktree / "unfinished.txt").exists()
    refs = git(root, "for-each-ref", "--format=%(refname)", "refs/stigmergy/attempts/").split()
    assert len(refs) == 1
    assert git(root, "show", f"{refs[0]}:unfinished.txt") == "half done"
    second.claim.close()


def test_a_merge_tree_error_is_an_error_never_a_conflict(env_root: Path) -> None:
    head = gitops.rev_parse(env_root, "main")
    assert head is not None
    with pytest.raises(GitError, match="not something we can merge"):
        gitops.merge_tree(env_root, head, "0" * 40)
