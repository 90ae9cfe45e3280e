"""Merges decided by whole files: the same trees as `git merge-tree`, or git is asked."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from stigmergy_cli import gitops, treemerge
from stigmergy_cli.gitfiles import NeedsGit

from .conftest import git

# Paths that nest, a file named like a directory and a dot ("d.b", which git orders before
# "d/"), and a file ("g") that a side may turn into a directory ("g/a").
PATHS = ["a", "b", "d.b", "d/a", "d/b", "d/e/a", "d/e/b", "f/a", "g", "g/a"]
# Few contents, so that sides often write the same bytes (what git's renames look for).
CONTENTS = [f"line {n}\n" * (1 + n % 3) for n in range(6)]
MODES = ["100644", "100755", "120000"]

Files = dict[str, tuple[str, str]]  # path -> (mode, content)


class History:
    """Commits made straight from file lists (a private index per commit, no checkout)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        pool = root.parent / "pool"
        pool.mkdir()
        paths = []
        for n, text in enumerate(CONTENTS):
            (pool / str(n)).write_text(text)
            paths.append(str(pool / str(n)))
        out = subprocess.run(
            ["git", "hash-object", "-w", "--stdin-paths", "--no-filters"],
            cwd=root,
            input="\n".join(paths),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        self.blobs = dict(zip(CONTENTS, out.split(), strict=True))
        self.contents = {sha: text for text, sha in self.blobs.items()}
        self.made = 0

    def commit(self, files: Files, *parents: str) -> str:
        self.made += 1
        index = self.root.parent / f"index-{self.made}"
        listing = "".join(
            f"{mode} {self.blobs[text]}\t{path}\n" for path, (mode, text) in sorted(files.items())
        )
        env = {**os.environ, "GIT_INDEX_FILE": str(index)}
        for args in (["update-index", "--add", "--index-info"], ["write-tree"]):
            tree = subprocess.run(
                ["git", *args],
                cwd=self.root,
                input=listing,
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout.strip()
        args = ["commit-tree", tree, "-m", f"commit {self.made}"]
        for parent in parents:
            args += ["-p", parent]
        return git(self.root, *args)

    def files(self, commit: str) -> Files:
        found: Files = {}
        for line in filter(None, git(self.root, "ls-tree", "-r", "-z", commit).split("\0")):
            meta, path = line.split("\t", 1)
            mode, _, sha = meta.split()
            found[path] = (mode, self.contents[sha])
        return found


def _tidy(files: Files) -> Files:
    """A file and a directory cannot share a name: the directory's files go."""
    return {
        path: entry
        for path, entry in files.items()
        if not any(path.startswith(f"{other}/") for other in files)
    }


def _change(rng: random.Random, files: Files, path: str, *, delete: bool = True) -> None:
    if delete and path in files and rng.random() < 0.3:
        del files[path]
    elif path in files and rng.random() < 0.3:
        mode, text = files[path]
        files[path] = (rng.choice([m for m in MODES if m != mode]), text)
    else:
        entry = files.get(path)
        while files.get(path) == entry:
            files[path] = (rng.choice(MODES[:2]), rng.choice(CONTENTS))


def _scenario(rng: random.Random, both: bool) -> tuple[Files, Files, Files]:
    """A base and two sides; each path changed by one side at most, unless `both`."""
    base = _tidy(
        {p: (rng.choice(MODES[:2]), rng.choice(CONTENTS)) for p in PATHS if rng.random() < 0.6}
    )
    ours, theirs = dict(base), dict(base)
    for path in PATHS:
        who = rng.choice(
            ["none", "none", "ours", "theirs", "same"] + (["each"] * 2 if both else [])
        )
        if who in ("ours", "each"):
            _change(rng, ours, path)
        if who in ("theirs", "each"):
            _change(rng, theirs, path)
        if who == "same":  # the same change on both sides; deleting on both is git's to judge
            _change(rng, ours, path, delete=rng.random() < 0.2)
            if path in ours:
                theirs[path] = ours[path]
            else:
                theirs.pop(path, None)
    return base, _tidy(ours), _tidy(theirs)


def _git_merge(root: Path, ours: str, theirs: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["git", "merge-tree", "--write-tree", ours, theirs],
        check=False,
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, proc.stdout.split("\n")[0]


def _merge(
    root: Path, history: History, scenario: tuple[Files, Files, Files]
) -> tuple[str, str, str]:
    base_files, ours_files, theirs_files = scenario
    base = history.commit(base_files)
    ours = history.commit(ours_files, base)
    theirs = history.commit(theirs_files, base)
    return base, ours, theirs


def _compare(repo: Path, history: History, seed: int, count: int, *, both: bool) -> int:
    """Merge `count` random histories both ways: wherever treemerge answers, git must have
    merged cleanly to the same tree. Returns how many it answered."""
    rng = random.Random(seed)
    answered = 0
    for _ in range(count):
        base, ours, theirs = _merge(repo, history, _scenario(rng, both=both))
        code, tree = _git_merge(repo, ours, theirs)
        try:
            made = treemerge.merge(repo / ".git", ours, theirs, base)
        except NeedsGit:
            continue
        assert (code, made) == (0, tree)
        answered += 1
    return answered


def test_merges_decided_by_whole_files_are_the_trees_git_merge_tree_writes(repo: Path) -> None:
    history = History(repo)
    # The usual case is done here, not handed back (some histories delete a path on both
    # sides, which is git's to judge).
    assert _compare(repo, history, 5, 40, both=False) >= 30
    assert git(repo, "fsck", "--strict", "--no-dangling") == ""


def test_a_path_changed_on_both_sides_is_left_to_git(repo: Path) -> None:
    history = History(repo)
    assert _compare(repo, history, 11, 30, both=True) <= 20
    # Both sides turned directory g/ into the same file, so g/a is gone on both, and one side
    # also added its content as "a": git sees a rename on one side, a deletion on the other.
    g = ("100644", CONTENTS[4])
    base = history.commit({"g/a": g, "b": g})
    ours = history.commit({"g": g, "b": g}, base)
    theirs = history.commit({"g": g, "b": g, "a": g}, base)
    assert _git_merge(repo, ours, theirs)[0] == 1
    with pytest.raises(NeedsGit):
        treemerge.merge(repo / ".git", ours, theirs, base)
    # Through gitops, what git says stands: here a conflict, with its file.
    base = history.commit({"a": ("100644", CONTENTS[0])})
    ours = history.commit({"a": ("100644", CONTENTS[1])}, base)
    theirs = history.commit({"a": ("100644", CONTENTS[2])}, base)
    merged = gitops.merge_tree(repo, ours, theirs, base=base)
    assert (merged.clean, merged.conflicts) == (False, ("a",))


def test_the_base_must_plainly_be_the_merge_base(repo: Path) -> None:
    history = History(repo)
    base = history.commit({"a": ("100644", CONTENTS[0])})
    ours = history.commit({"a": ("100644", CONTENTS[0]), "b": ("100644", CONTENTS[1])}, base)
    later = history.commit({**history.files(ours), "c": ("100644", CONTENTS[2])}, ours)
    theirs = history.commit({"a": ("100644", CONTENTS[3])}, base)
    assert treemerge.merge(repo / ".git", later, theirs, base) == _git_merge(repo, later, theirs)[1]
    with pytest.raises(NeedsGit):  # the target was reset to before the base
        treemerge.merge(repo / ".git", history.commit({}), theirs, base)
    with pytest.raises(NeedsGit):  # not one commit on top of the base
        treemerge.merge(repo / ".git", later, history.commit({}, theirs), base)
    merged = history.commit(history.files(later), later, theirs)
    with pytest.raises(NeedsGit):  # already merged into the target
        treemerge.merge(repo / ".git", merged, theirs, base)
    with pytest.raises(NeedsGit):  # the target is `theirs`, fast-forwarded to it
        treemerge.merge(repo / ".git", theirs, theirs, base)
    past = history.commit({**history.files(theirs), "d": ("100644", CONTENTS[4])}, theirs)
    with pytest.raises(NeedsGit):  # or went on from it
        treemerge.merge(repo / ".git", past, theirs, base)


def test_packed_objects_and_rewritten_history_are_left_to_git(repo: Path) -> None:
    history = History(repo)
    base = history.commit({"a": ("100644", CONTENTS[0])})
    ours = history.commit({"a": ("100644", CONTENTS[0]), "b": ("100644", CONTENTS[1])}, base)
    theirs = history.commit({"a": ("100644", CONTENTS[3])}, base)
    expected = _git_merge(repo, ours, theirs)[1]
    git(repo, "replace", theirs, ours)
    with pytest.raises(NeedsGit):
        treemerge.merge(repo / ".git", ours, theirs, base)
    git(repo, "replace", "-d", theirs)
    for name in ("merged", "ours", "theirs"):
        git(repo, "update-ref", f"refs/heads/{name}", {"ours": ours}.get(name, theirs))
    git(repo, "gc", "-q", "--prune=now")
    with pytest.raises(NeedsGit):
        treemerge.merge(repo / ".git", ours, theirs, base)
    assert gitops.merge_tree(repo, ours, theirs, base=base).tree == expected  # by git
