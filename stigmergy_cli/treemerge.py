"""Three-way merges decided by whole files and directories, done on git's objects directly.

Agents given independent tasks mostly change different files, and every merge runs under
the integration lock, where a `git merge-tree` process was a quarter of the time the lock is
held (docs/design.md, "Merges without a git process"). When every path differs from the
merge base on one side at most, the merge needs no judgement: each path is taken from the
side that changed it, which is what git's own merge does for such paths (git-read-tree(1),
"3-Way Merge"), and the trees written are byte for byte the ones `git merge-tree` writes.

Only that case is done here. Everything else raises NeedsGit and git merges: a path changed
on both sides in different ways (even only its mode), a path deleted on both sides (git may
see two renames of one file and report a conflict), a base that is not plainly the merge
base, a history git would rewrite (replace refs, grafts), objects that are not stored loose.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stigmergy_cli import gitfiles
from stigmergy_cli.gitfiles import NeedsGit

_TREE = b"40000"
# The modes git writes in trees; anything else is left to git to normalise.
_MODES = frozenset({b"100644", b"100755", b"120000", b"160000", _TREE})
# How far back along the target's first parents the base may be: one step per merge since
# the agent started its task, so twenty agents need about twenty.
_WALK = 256

Entry = tuple[bytes, bytes]  # (mode, binary object name)
_ENTRY = re.compile(rb"([0-7]+) ([^\0]+)\0(.{20})", re.DOTALL)
_ENTRIES = re.compile(rb"(?:[0-7]+ [^\0]+\0.{20})*", re.DOTALL)


def merge(common: Path, ours: str, theirs: str, base: str) -> str:
    """The tree of the merge of `theirs` into `ours`, where `theirs` is one commit on top of
    `base` and `base` is on `ours`' first-parent line (so it is the merge base); NeedsGit
    when git should merge."""
    objects = common / "objects"
    _check_history(common)
    base_tree, ours_tree, theirs_tree = (
        bytes.fromhex(tree) for tree in _trees(objects, ours, theirs, base)
    )
    merged = _merge(objects, base_tree, ours_tree, theirs_tree)
    if merged is None:  # every file deleted
        return gitfiles.write_object(objects, b"tree", b"")
    return merged.hex()


def _check_history(common: Path) -> None:
    """NeedsGit if git would see other objects than the stored ones (replace refs, grafts)."""
    if "GIT_REPLACE_REF_BASE" in os.environ or (common / "info" / "grafts").exists():
        raise NeedsGit("history is rewritten by grafts or another replace-ref namespace")
    replace = common / "refs" / "replace"
    if replace.is_dir() and any(replace.iterdir()):
        raise NeedsGit("replace refs")
    try:
        packed = (common / "packed-refs").read_bytes()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise NeedsGit(str(exc)) from None
    if b" refs/replace/" in packed:
        raise NeedsGit("replace refs")


def _trees(objects: Path, ours: str, theirs: str, base: str) -> tuple[str, str, str]:
    """The trees of `base`, `ours` and `theirs`; NeedsGit unless `base` is their merge base:
    the only parent of `theirs`, and on `ours`' first-parent line, which does not already
    merge `theirs`."""
    theirs_tree, parents = gitfiles.commit_links(objects, theirs)
    if parents != (base,):
        raise NeedsGit(f"{theirs} is not one commit on top of {base}")
    ours_tree: str | None = None
    at = ours
    for _ in range(_WALK):
        if at == theirs:
            break  # `ours` is, or fast-forwarded past, `theirs`: nothing to merge
        if at == base:
            base_tree = gitfiles.tree_of(objects, base)
            return base_tree, ours_tree or base_tree, theirs_tree
        tree, parents = gitfiles.commit_links(objects, at)
        ours_tree = ours_tree or tree
        if not parents or theirs in parents:
            break
        at = parents[0]
    raise NeedsGit(f"{base} is not plainly the merge base of {ours} and {theirs}")


def _merge(objects: Path, base: bytes | None, ours: bytes, theirs: bytes) -> bytes | None:
    """The merged tree's name (None: empty), writing the trees that are new."""
    if theirs == base:
        return ours
    if ours == base:
        return theirs
    if ours == theirs:
        if base is not None:
            _check_kept(objects, base, ours)
        return ours
    old = _entries(objects, base) if base is not None else {}
    mine, yours = _entries(objects, ours), _entries(objects, theirs)
    merged: dict[bytes, Entry] = {}
    for name in old.keys() | mine.keys() | yours.keys():
        entry = _pick(objects, name, old.get(name), mine.get(name), yours.get(name))
        if entry is not None:
            merged[name] = entry
    if not merged:
        return None
    # git orders a tree's entries by name, a directory's name as if it ended in "/".
    names = sorted(merged, key=lambda name: name + b"/" if merged[name][0] == _TREE else name)
    body = b"".join(b"%s %s\0%s" % (merged[name][0], name, merged[name][1]) for name in names)
    return bytes.fromhex(gitfiles.write_object(objects, b"tree", body))


def _pick(
    objects: Path, name: bytes, base: Entry | None, ours: Entry | None, theirs: Entry | None
) -> Entry | None:
    """One path of a merged tree: the side that changed it (None: absent)."""
    picked: Entry | None
    if ours == theirs:
        if base is not None and base != ours:
            _check_kept_entry(objects, name, base, ours)
        picked = ours
    elif base == ours:
        picked = theirs
    elif base == theirs:
        picked = ours
    elif (
        ours is not None
        and theirs is not None
        and ours[0] == theirs[0] == _TREE
        and (base is None or base[0] == _TREE)
    ):
        tree = _merge(objects, base[1] if base else None, ours[1], theirs[1])
        return None if tree is None else (_TREE, tree)
    else:
        raise NeedsGit(f"{name!r} changed on both sides")
    if picked is not None and picked[0] not in _MODES:
        raise NeedsGit(f"{name!r} has mode {picked[0]!r}")
    return picked


def _check_kept(objects: Path, base: bytes, tree: bytes) -> None:
    """NeedsGit if a file of `base` is gone from `tree`, which both sides made alike.

    A file deleted on both sides is git's to judge: one side may also have added it under
    another name, and git then reports a conflict (rename/delete).
    """
    if base == tree:
        return
    now = _entries(objects, tree)
    for name, entry in _entries(objects, base).items():
        _check_kept_entry(objects, name, entry, now.get(name))


def _check_kept_entry(objects: Path, name: bytes, base: Entry, now: Entry | None) -> None:
    if now is None or (base[0] == _TREE) != (now[0] == _TREE):
        raise NeedsGit(f"{name!r} deleted on both sides")
    if base[0] == _TREE:
        _check_kept(objects, base[1], now[1])


def _entries(objects: Path, tree: bytes) -> dict[bytes, Entry]:
    """A tree's entries by name (gitformat-tree: "<mode> <name>\\0<20-byte name>" each)."""
    kind, body = gitfiles.read_object(objects, tree.hex())
    if kind != b"tree":
        raise NeedsGit(f"{tree.hex()} is not a tree")
    found = _ENTRY.findall(body) if _ENTRIES.fullmatch(body) else None
    entries = {name: (mode, sha) for mode, name, sha in found or ()}
    if found is None or len(entries) != len(found):  # not entries, or a name twice
        raise NeedsGit(f"tree {tree.hex()} is not as git writes trees")
    return entries
