"""Trees written from a worktree's index: the same trees as `git write-tree`, or git is asked."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pytest

from stigmergy_cli import gitfiles, gitindex
from stigmergy_cli.gitfiles import NeedsGit

from .conftest import git

# Names that nest, and names git orders around a directory's: "d.b" and "d-b" sort before
# "d/", "d0" after it.
PATHS = ["a", "b", "d.b", "d-b", "d0", "d/a", "d/b", "d/e/a", "d/e/b", "f/g/h/a", "x y", "é"]
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


@pytest.fixture
def worktree(repo: Path) -> Path:
    path = repo.parent / "wt"
    git(repo, "worktree", "add", "-q", "-b", "agent", str(path))
    return path


def _ours(repo: Path, worktree: Path) -> str:
    return gitindex.write_tree(gitfiles.worktree_git_dir(worktree), repo / ".git" / "objects")


def _change(rng: random.Random, worktree: Path) -> None:
    path = worktree / rng.choice(PATHS)
    if path.is_symlink() or path.is_file():
        path.unlink()
        if rng.random() < 0.4:
            return
    elif path.exists():  # a directory of other names
        return
    for parent in path.relative_to(worktree).parents:
        if (worktree / parent).is_file() or (worktree / parent).is_symlink():
            return  # a file where a directory would go
    path.parent.mkdir(parents=True, exist_ok=True)
    if rng.random() < 0.15:
        path.symlink_to(rng.choice(["a", "../b", "nowhere"]))
        return
    path.write_text(f"{rng.random()}\n")
    path.chmod(0o755 if rng.random() < 0.3 else 0o644)


def test_the_trees_are_the_ones_git_write_tree_writes(repo: Path, worktree: Path) -> None:
    rng = random.Random(5)
    for _ in range(40):
        for _ in range(rng.randint(1, 5)):
            _change(rng, worktree)
        git(worktree, "add", "-A")
        ours = _ours(repo, worktree)
        # Every tree ours names is stored before git writes any of them.
        git(worktree, "ls-tree", "-r", "-t", ours)
        assert ours == git(worktree, "write-tree")
        if rng.random() < 0.3:
            git(worktree, "commit", "-q", "-m", "step")


def test_an_empty_index_is_the_empty_tree(repo: Path, worktree: Path) -> None:
    git(worktree, "rm", "-q", "-r", ".")
    assert _ours(repo, worktree) == EMPTY_TREE == git(worktree, "write-tree")


def test_extended_entries_optional_extensions_and_submodules(repo: Path, worktree: Path) -> None:
    (worktree / "d").mkdir()
    (worktree / "d" / "a").write_text("a\n")
    git(worktree, "add", "-A")
    # skip-worktree makes a version 3 entry; the untracked cache is an optional extension.
    git(worktree, "update-index", "--skip-worktree", "README.md")
    git(worktree, "update-index", "--untracked-cache")
    git(worktree, "status", "--porcelain")  # fills the untracked cache
    head = git(repo, "rev-parse", "HEAD")
    git(worktree, "update-index", "--add", "--cacheinfo", f"160000,{head},sub")
    data = (gitfiles.worktree_git_dir(worktree) / "index").read_bytes()
    assert data[4:8] == b"\0\0\0\3"
    assert b"UNTR" in data
    assert _ours(repo, worktree) == git(worktree, "write-tree")


def test_a_path_longer_than_the_name_field(repo: Path, worktree: Path) -> None:
    blob = git(worktree, "hash-object", "-w", "README.md")
    deep = "/".join(["p" * 200] * 22)  # 4,421 bytes, where the name field says 4,095
    git(worktree, "update-index", "--add", "--cacheinfo", f"100644,{blob},{deep}")
    assert _ours(repo, worktree) == git(worktree, "write-tree")


def _index(worktree: Path) -> Path:
    return gitfiles.worktree_git_dir(worktree) / "index"


@pytest.mark.parametrize(
    "setup",
    [
        ["update-index", "--index-version", "4"],
        ["update-index", "--split-index"],
        ["add", "--intent-to-add", "new"],
    ],
    ids=["version 4", "split index", "intent to add"],
)
def test_indexes_git_should_read(repo: Path, worktree: Path, setup: list[str]) -> None:
    (worktree / "new").write_text("new\n")
    git(worktree, *setup)
    with pytest.raises(NeedsGit):
        _ours(repo, worktree)


def test_an_unmerged_index_is_left_to_git(repo: Path, worktree: Path) -> None:
    (worktree / "README.md").write_text("ours\n")
    git(worktree, "commit", "-q", "-am", "ours")
    git(repo, "checkout", "-q", "-b", "other", "HEAD")
    (repo / "README.md").write_text("theirs\n")
    git(repo, "commit", "-q", "-am", "theirs")
    merge = subprocess.run(
        ["git", "merge", "other"], cwd=worktree, capture_output=True, check=False
    )
    assert merge.returncode == 1
    with pytest.raises(NeedsGit, match="unmerged"):
        _ours(repo, worktree)


def test_a_damaged_index_is_left_to_git(repo: Path, worktree: Path) -> None:
    index = _index(worktree)
    data = bytearray(index.read_bytes())
    data[20] ^= 1  # inside the first entry, so the checksum no longer matches
    index.write_bytes(bytes(data))
    with pytest.raises(NeedsGit, match="checksum"):
        _ours(repo, worktree)
    index.write_bytes(b"DIRC")
    with pytest.raises(NeedsGit):
        _ours(repo, worktree)


def test_an_index_git_would_not_write_is_left_to_git(repo: Path, worktree: Path) -> None:
    (worktree / "b").write_text("b\n")
    git(worktree, "add", "-A")
    body = _index(worktree).read_bytes()[:-20]
    # One entry more than there are (the checksum made to match), or two swapped.
    counted = body[:8] + (int.from_bytes(body[8:12], "big") + 1).to_bytes(4, "big") + body[12:]
    first = 12  # "README.md", then "b": each 62 bytes, the name, and 1-8 NULs
    second = first + ((62 + len("README.md") + 8) & ~7)
    end = second + ((62 + len("b") + 8) & ~7)
    swapped = body[:first] + body[second:end] + body[first:second] + body[end:]
    for bad in (counted, swapped):
        _index(worktree).write_bytes(bad + hashlib.sha1(bad).digest())
        with pytest.raises(NeedsGit):
            _ours(repo, worktree)
    with pytest.raises(NeedsGit, match="not sorted"):
        _ours(repo, worktree)


def test_no_index_is_the_empty_tree(repo: Path, worktree: Path) -> None:
    _index(worktree).unlink()
    assert _ours(repo, worktree) == EMPTY_TREE
