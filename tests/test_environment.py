from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from stigmergy_cli import gitops, worktrees
from stigmergy_cli.environment import find_root, initialize, open_environment
from stigmergy_cli.errors import Conflict, GitError, InvalidInput, NotARepository, NotInitialized

from .conftest import Cli, git, snapshot


def test_root_is_found_from_a_subdirectory_and_from_a_linked_worktree(env_root: Path) -> None:
    sub = env_root / "src" / "pkg"
    sub.mkdir(parents=True)
    assert find_root(sub, None) == env_root
    worktree = env_root / ".stigmergy" / "workspaces" / "alpha"
    git(env_root, "worktree", "add", "-q", "--detach", str(worktree))
    assert find_root(worktree, None) == env_root
    assert open_environment(worktree, None, {}).layout.root == env_root


def test_root_override_and_its_errors(env_root: Path, tmp_path: Path) -> None:
    assert find_root(tmp_path, str(env_root)) == env_root
    with pytest.raises(NotInitialized, match="not a directory"):
        find_root(tmp_path, str(tmp_path / "nowhere"))
    with pytest.raises(NotInitialized, match="run `stigmergy init`"):
        open_environment(tmp_path, str(tmp_path), {})


def test_outside_a_repository(tmp_path: Path) -> None:
    with pytest.raises(NotARepository, match="not inside a git repository"):
        gitops.find_repo_root(tmp_path)
    with pytest.raises(NotARepository):
        initialize(tmp_path, None, {})
    assert list(tmp_path.iterdir()) == []


def test_init_is_idempotent_and_keeps_an_edited_config(repo: Path) -> None:
    report = initialize(repo, None, {})
    assert report.target == "main"
    assert ".stigmergy/config.yaml" in report.created
    config = repo / ".stigmergy" / "config.yaml"
    edited = config.read_text().replace("lease: 60", "lease: 90")
    config.write_text(edited)
    again = initialize(repo, None, {})
    assert not again.changed
    assert config.read_text() == edited
    assert open_environment(repo, None, {}).config.lease == 90


def test_init_restores_what_was_lost(env_root: Path) -> None:
    (env_root / ".stigmergy" / ".gitignore").unlink()
    (env_root / ".stigmergy" / "tasks" / "failed").rmdir()
    report = initialize(env_root, None, {})
    assert sorted(report.created) == [".stigmergy/.gitignore", ".stigmergy/tasks/failed/"]


def test_init_refuses_a_missing_or_invalid_target(repo: Path) -> None:
    with pytest.raises(InvalidInput, match="target branch 'nope' does not exist"):
        initialize(repo, "nope", {})
    with pytest.raises(InvalidInput, match="invalid target branch name"):
        initialize(repo, "bad..name", {})
    with pytest.raises(InvalidInput, match="invalid target branch name"):
        initialize(repo, "--upload-pack=x", {})
    assert not (repo / ".stigmergy").exists()


def test_init_refuses_to_change_the_target_of_an_existing_environment(repo: Path) -> None:
    git(repo, "branch", "develop")
    initialize(repo, "develop", {})
    with pytest.raises(Conflict, match="already initialized with target 'develop'"):
        initialize(repo, "main", {})


def test_init_in_a_repository_without_commits_targets_the_unborn_branch(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "trunk")
    assert initialize(tmp_path, None, {}).target == "trunk"


def test_the_gitignore_keeps_runtime_state_out_of_commits(env_root: Path) -> None:
    for name in ("locks/x.lock/owner.json", "agents/a.json", "events.jsonl", "cache/tasks.json"):
        path = env_root / ".stigmergy" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    (env_root / ".stigmergy" / "tasks" / "pending" / "t.yaml").write_text("id: t\ntitle: T\n")
    status = git(env_root, "status", "--porcelain", "--untracked-files=all")
    assert ".stigmergy/tasks/pending/t.yaml" in status
    assert ".stigmergy/config.yaml" in status
    for runtime in ("locks/", "agents/", "events.jsonl", "cache/"):
        assert runtime not in status


def test_local_only_commands_refuse_the_git_backend(env_root: Path, cli: Cli) -> None:
    config = env_root / ".stigmergy" / "config.yaml"
    config.write_text(
        config.read_text()
        .replace("backend: local", "backend: git")
        .replace("remote: null", "remote: origin")
    )
    assert open_environment(env_root, None, {}).config.remote == "origin"
    before = snapshot(env_root)
    result = cli("task", "boost", "x", cwd=env_root)
    assert result.code == 1
    assert result.err.strip() == (
        "error: `stigmergy task boost` does not work with the git backend yet (remote "
        "'origin'); see docs/distributed.md for the commands that do"
    )
    assert snapshot(env_root) == before


def test_root_discovery_from_files_agrees_with_git(env_root: Path, tmp_path: Path) -> None:
    """The fast path (reading .git files) must give what `git rev-parse` gives."""
    worktree = tmp_path / "outside-worktree"
    git(env_root, "worktree", "add", "-q", "--detach", str(worktree))
    sub = env_root / "a" / "b"
    sub.mkdir(parents=True)
    submodule_parent = tmp_path / "super"
    submodule_parent.mkdir()
    git(submodule_parent, "init", "-q", "-b", "main")
    git(
        submodule_parent,
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        str(env_root),
        "child",
    )
    for start in (env_root, sub, worktree, submodule_parent / "child", submodule_parent):
        fast = gitops._root_from_files(start.resolve())
        common = Path(git(start, "rev-parse", "--path-format=absolute", "--git-common-dir"))
        expected = (
            common.parent
            if common.name == ".git"
            else Path(git(start, "rev-parse", "--show-toplevel"))
        )
        assert fast == expected, start


def test_the_example_environment_is_readable_by_this_version(repo: Path, tmp_path: Path) -> None:
    import shutil

    from stigmergy_cli import heartbeats, locks
    from stigmergy_cli.paths import Layout

    example = Path(__file__).resolve().parents[1] / ".stigmergy.example"
    shutil.copytree(example, repo / ".stigmergy")
    env = open_environment(repo, None, {})
    scan = env.store.scan(0.0)
    assert scan.problems == []
    assert {r.state for r in scan.records} == {"pending", "active", "done", "failed", "cancelled"}
    (lock,) = locks.list_locks(Layout(repo))
    assert lock.owner is not None
    assert lock.owner.agent == "gamma"
    assert all(a.beat is not None for a in heartbeats.list_agents(Layout(repo)))


def test_the_checkout_of_a_branch_is_read_like_git_reads_it(env_root: Path, tmp_path: Path) -> None:
    git(env_root, "branch", "feature")
    git(env_root, "branch", "idle")
    linked = tmp_path / "linked"
    git(env_root, "worktree", "add", "-q", str(linked), "feature")
    assert gitops.checkout_of(env_root, "main") == (env_root, git(env_root, "rev-parse", "main"))
    assert gitops.checkout_of(env_root, "feature") == (
        linked,
        git(env_root, "rev-parse", "feature"),
    )
    assert gitops.checkout_of(env_root, "idle") == (None, git(env_root, "rev-parse", "idle"))
    assert gitops.checkout_of(env_root, "absent") == (None, None)
    import shutil

    shutil.rmtree(linked)  # deleted by hand: git is asked, and still lists it until pruned
    assert gitops.checkout_of(env_root, "feature")[1] == git(env_root, "rev-parse", "feature")


def test_refs_read_from_files_agree_with_git(env_root: Path, tmp_path: Path) -> None:
    git(env_root, "branch", "loose")
    git(env_root, "branch", "packed")
    git(env_root, "pack-refs", "--all")  # `packed` (and the others) now live in packed-refs
    git(env_root, "branch", "-f", "loose", "HEAD")  # ...and `loose` is loose again
    for ref in ("refs/heads/main", "refs/heads/loose", "refs/heads/packed"):
        assert gitops.ref_commit(env_root, ref) == git(env_root, "rev-parse", ref)
    assert gitops.ref_commit(env_root, "refs/heads/absent") is None
    linked = tmp_path / "wt"
    git(env_root, "worktree", "add", "-q", "-b", "side", str(linked))
    (linked / "new.txt").write_text("x\n")
    git(linked, "add", "new.txt")
    git(linked, "commit", "-q", "-m", "on side")
    assert gitops.head_commit(linked, env_root) == git(linked, "rev-parse", "HEAD")
    git(linked, "checkout", "-q", "--detach", "HEAD~1")
    assert gitops.head_commit(linked, env_root) == git(linked, "rev-parse", "HEAD")


def test_stigmergys_own_refs_are_written_as_git_reads_them(env_root: Path) -> None:
    head = git(env_root, "rev-parse", "HEAD")
    gitops.keep_ref(env_root, "refs/stigmergy/results/a", head)
    assert git(env_root, "rev-parse", "refs/stigmergy/results/a") == head
    git(env_root, "pack-refs", "--all")  # packed, then written again loose: the loose one wins
    (env_root / "next.txt").write_text("next\n")
    git(env_root, "add", "next.txt")
    git(env_root, "commit", "-q", "-m", "next")
    newer = git(env_root, "rev-parse", "HEAD")
    gitops.keep_ref(env_root, "refs/stigmergy/results/a", newer)
    assert git(env_root, "rev-parse", "refs/stigmergy/results/a") == newer
    assert git(env_root, "for-each-ref", "--format=%(refname)", "refs/stigmergy/") == (
        "refs/stigmergy/results/a"
    )
    # Someone else holding the ref's lock: git is asked, and says so.
    lock = env_root / ".git/refs/stigmergy/results/a.lock"
    lock.write_text("")
    with pytest.raises(GitError):
        gitops.keep_ref(env_root, "refs/stigmergy/results/a", head)
    assert git(env_root, "rev-parse", "refs/stigmergy/results/a") == newer
    # A lock left by a writer killed while holding it, ten seconds ago: taken over.
    ago = time.time() - 10
    os.utime(lock, (ago, ago))
    gitops.keep_ref(env_root, "refs/stigmergy/results/a", head)
    assert git(env_root, "rev-parse", "refs/stigmergy/results/a") == head
    assert not lock.exists()
    # A ref in the way (b/c where b would go): git is asked, and no lock file is left behind.
    gitops.keep_ref(env_root, "refs/stigmergy/results/b/c", head)
    with pytest.raises(GitError):
        gitops.keep_ref(env_root, "refs/stigmergy/results/b", head)
    assert not (env_root / ".git/refs/stigmergy/results/b.lock").exists()


def test_commit_objects_are_written_exactly_as_git_commit_tree_writes_them(
    env_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (env_root / "side.txt").write_text("side\n")
    git(env_root, "add", "side.txt")
    git(env_root, "commit", "-q", "-m", "side")
    ours, theirs = git(env_root, "rev-parse", "HEAD~1"), git(env_root, "rev-parse", "HEAD")
    tree = git(env_root, "rev-parse", "HEAD^{tree}")
    ident = gitops.identity(env_root)
    message = "Merge t: a title\n\nwith a body, and ünïcode\n"
    made = gitops.commit_tree(env_root, tree, [ours, theirs], message, ident)
    assert (env_root / ".git/objects" / made[:2] / made[2:]).is_file()  # stored loose
    # git, given the same date, makes the same object: the same bytes, the same name.
    stamp = git(env_root, "log", "-1", "--format=%ad", "--date=raw", made)
    monkeypatch.setenv("GIT_AUTHOR_DATE", stamp)
    monkeypatch.setenv("GIT_COMMITTER_DATE", stamp)
    args = ["commit-tree", tree, "-p", ours, "-p", theirs, "-m", message.rstrip("\n") + "\n"]
    assert git(env_root, *gitops.identity(env_root), *args) == made
    assert git(env_root, "fsck", "--strict", "--no-dangling") == ""
    # With identity or date variables set, git makes the commit and they are honoured.
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Someone Else")
    other = gitops.commit_tree(env_root, tree, [ours], "by git\n", ident)
    assert git(env_root, "log", "-1", "--format=%an %ad", "--date=raw", other) == (
        f"Someone Else {stamp}"
    )


def _linked(env_root: Path, name: str) -> Path:
    worktree = env_root / ".stigmergy" / "workspaces" / name
    git(env_root, "worktree", "add", "-q", "-b", f"stigmergy/{name}", str(worktree))
    return worktree


def test_a_worktree_commit_is_what_git_commit_makes_and_leaves_what_it_leaves(
    env_root: Path,
) -> None:
    worktree = _linked(env_root, "alpha")
    # A worktree may have its own configuration: its author is the one git would name.
    git(env_root, "config", "extensions.worktreeConfig", "true")
    git(worktree, "config", "--worktree", "user.name", "Worktree Person")
    parent = git(worktree, "rev-parse", "HEAD")
    ident = gitops.identity(worktree)
    assert gitops.commit_all(worktree, "nothing\n", ident, root=env_root) is None
    (worktree / "new.txt").write_text("new\n")
    (worktree / "README.md").unlink()
    made = gitops.commit_all(worktree, "A title\n\nA body.\n", ident, root=env_root)
    assert made is not None
    assert git(worktree, "rev-parse", "HEAD", "stigmergy/alpha") == f"{made}\n{made}"
    assert git(worktree, "log", "-1", "--format=%P|%an|%cn|%B", made) == (
        f"{parent}|Worktree Person|Worktree Person|A title\n\nA body."
    )
    assert git(worktree, "ls-tree", "--name-only", "HEAD") == "new.txt"
    assert git(worktree, "status", "--porcelain") == ""
    # The reflogs git keeps for that branch and that worktree's HEAD say what happened.
    assert git(worktree, "reflog", "-1", "--format=%gs", "stigmergy/alpha") == "commit: A title"
    assert git(worktree, "reflog", "-1", "--format=%gs", "HEAD") == "commit: A title"
    assert git(env_root, "fsck", "--strict", "--no-dangling") == ""
    # A merge to conclude is left to git, which records both parents.
    (env_root / "side.txt").write_text("side\n")
    git(env_root, "add", "side.txt")
    git(env_root, "commit", "-q", "-m", "side")
    git(worktree, "merge", "-q", "--no-commit", "--no-ff", "main")
    (worktree / "merged.txt").write_text("merged\n")
    concluded = gitops.commit_all(worktree, "Merged\n", ident, root=env_root)
    assert concluded is not None
    assert len(git(worktree, "log", "-1", "--format=%P", concluded).split()) == 2


def test_a_clean_worktree_is_moved_like_a_checkout_and_anything_odd_is_reset_by_git(
    env_root: Path,
) -> None:
    worktree = _linked(env_root, "beta")
    start = git(worktree, "rev-parse", "HEAD")
    (env_root / "README.md").unlink()
    (env_root / "added.txt").write_text("added\n")
    git(env_root, "add", "README.md", "added.txt")
    git(env_root, "commit", "-q", "-m", "moved on")
    tip = git(env_root, "rev-parse", "HEAD")
    assert gitops.move_clean_worktree(env_root, worktree, tip)
    assert git(worktree, "rev-parse", "HEAD", "stigmergy/beta") == f"{tip}\n{tip}"
    assert sorted(p.name for p in worktree.iterdir()) == [".git", "added.txt"]
    assert git(worktree, "status", "--porcelain") == ""
    assert git(worktree, "reflog", "-1", "--format=%gs", "HEAD") == f"reset: moving to {tip}"
    # An untracked file where the commit has one: refused, nothing changed; git's reset then
    # does what a reset does.
    (worktree / "README.md").write_text("in the way\n")
    assert not gitops.move_clean_worktree(env_root, worktree, start)
    assert git(worktree, "rev-parse", "HEAD") == tip
    assert (worktree / "README.md").read_text() == "in the way\n"
    worktrees.reset(env_root, worktree, start, clean=True)
    assert git(worktree, "rev-parse", "HEAD") == start
    assert (worktree / "README.md").read_text() == "sample\n"
    assert git(worktree, "status", "--porcelain") == ""


def test_once_objects_and_refs_are_packed_git_commits_and_the_result_is_the_same(
    env_root: Path,
) -> None:
    worktree = _linked(env_root, "gamma")
    git(env_root, "gc", "-q")  # the branch's commit packed, its ref in packed-refs
    assert not (env_root / ".git/refs/heads/stigmergy/gamma").exists()
    (worktree / "one.txt").write_text("one\n")
    first = gitops.commit_all(worktree, "First\n", gitops.identity(worktree), root=env_root)
    assert first is not None
    assert git(worktree, "rev-parse", "HEAD", "stigmergy/gamma") == f"{first}\n{first}"
    # Its parent is loose now: the next one is written directly, on top of it.
    (worktree / "two.txt").write_text("two\n")
    second = gitops.commit_all(worktree, "Second\n", gitops.identity(worktree), root=env_root)
    assert second is not None
    assert git(worktree, "log", "--format=%s", "-3") == "Second\nFirst\ninitial"
    assert git(worktree, "status", "--porcelain") == ""
    assert git(env_root, "fsck", "--strict", "--no-dangling") == ""
