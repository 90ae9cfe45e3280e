"""`git write-tree` without a git process: the trees of a linked worktree's index.

Every task's result is committed from the agent's index, and `git write-tree` was one of the
five git processes each task cost (docs/design.md, "Less work per task"). The index is read
as gitformat-index(5) describes it, versions 2 and 3, and its trees are written as loose
objects, byte for byte the trees git writes. Anything else raises NeedsGit and git writes the
tree: version 4 (prefix-compressed paths), a split or sparse index, a required extension
we do not know, an unmerged path, an entry added with --intent-to-add, a checksum that does
not match.
"""

from __future__ import annotations

import struct
from pathlib import Path

from stigmergy_cli import gitfiles
from stigmergy_cli.gitfiles import NeedsGit

_HEADER = struct.Struct(">4sLL")
# ctime, mtime (seconds and nanoseconds), dev, ino, mode, uid, gid, size; then the object
# name (20 bytes) and the flags (2 bytes).
_ENTRY = struct.Struct(">10L20sH")
_STAGE = 0x3000
_EXTENDED = 0x4000
_NAME_MASK = 0x0FFF
_INTENT_TO_ADD = 0x2000  # in the extended flags
_KINDS = {0o100000: b"100", 0o120000: b"120000", 0o160000: b"160000"}

Entry = tuple[bytes, bytes]  # (mode as a tree writes it, binary object name)


def write_tree(git_dir: Path, objects: Path) -> str:
    """The name of the tree of the index in `git_dir` (a worktree's own git dir), with every
    tree it needs stored in `objects`; what `git write-tree` prints."""
    try:
        data = (git_dir / "index").read_bytes()
    except FileNotFoundError:
        data = None
    except OSError as exc:
        raise NeedsGit(str(exc)) from None
    paths = read_index(data) if data is not None else []
    return _write(objects, paths, b"").hex()


def read_index(data: bytes) -> list[tuple[bytes, Entry]]:
    """The (path, entry) pairs of an index file, in its order (sorted by path)."""
    if len(data) < _HEADER.size + 20:
        raise NeedsGit("the index is too short")
    import hashlib  # loads OpenSSL: not for every command (see gitfiles.preload)

    body, trailer = data[:-20], data[-20:]
    # index.skipHash leaves the trailer zero.
    if trailer != bytes(20) and hashlib.sha1(body, usedforsecurity=False).digest() != trailer:
        raise NeedsGit("the index checksum does not match")
    signature, version, count = _HEADER.unpack_from(body)
    if signature != b"DIRC" or version not in (2, 3):
        raise NeedsGit(f"index version {version} is read by git")
    try:
        paths, at = _entries(body, count)
    except (struct.error, ValueError):  # cut short: no NUL, no room for an entry
        raise NeedsGit("the index is not as git writes it") from None
    _check_extensions(body, at)
    return paths


def _entries(body: bytes, count: int) -> tuple[list[tuple[bytes, Entry]], int]:
    """The index's entries, and where its extensions begin."""
    at = _HEADER.size
    paths: list[tuple[bytes, Entry]] = []
    for _ in range(count):
        fields = _ENTRY.unpack_from(body, at)
        mode, name, flags = fields[6], fields[10], fields[11]
        start = at + _ENTRY.size
        if flags & _EXTENDED:
            (extended,) = struct.unpack_from(">H", body, start)
            if extended & _INTENT_TO_ADD:
                raise NeedsGit("a path was added with --intent-to-add")
            start += 2
        if flags & _STAGE:
            raise NeedsGit("the index has unmerged paths")
        end = body.index(b"\0", start)
        path = body[start:end]
        if (flags & _NAME_MASK) != min(len(path), _NAME_MASK):
            raise NeedsGit("an index entry's name length does not match")
        if paths and path <= paths[-1][0]:  # the grouping into trees relies on the order
            raise NeedsGit("the index is not sorted")
        # Entries are padded with 1-8 NULs to a multiple of 8 bytes from their start.
        at += (end - at + 8) & ~7
        paths.append((path, (_tree_mode(mode), name)))
    return paths, at


def _tree_mode(mode: int) -> bytes:
    kind = _KINDS.get(mode & 0o170000)
    if kind is None:
        raise NeedsGit(f"index mode {mode:o}")
    if kind == b"100":
        return b"100755" if mode & 0o100 else b"100644"
    return kind


def _check_extensions(body: bytes, at: int) -> None:
    """Optional extensions (signatures in capitals: the cache tree, the untracked cache...)
    are not needed to write the tree; a required one (a split or sparse index) is."""
    while at < len(body):
        if at + 8 > len(body):
            raise NeedsGit("the index ends inside an extension header")
        signature, size = struct.unpack_from(">4sL", body, at)
        if not b"A" <= signature[:1] <= b"Z":
            raise NeedsGit(f"index extension {signature!r} is read by git")
        at += 8 + size
    if at != len(body):
        raise NeedsGit("the index's extensions overrun it")


def _write(objects: Path, paths: list[tuple[bytes, Entry]], prefix: bytes) -> bytes:
    """Write the tree of `paths` (all under `prefix`, in index order) and its subtrees."""
    entries: dict[bytes, Entry] = {}
    i = 0
    while i < len(paths):
        path, entry = paths[i]
        rest = path[len(prefix) :]
        folder, slash, _ = rest.partition(b"/")
        if (folder if slash else rest) in entries:
            raise NeedsGit(f"{prefix + folder!r} is both a file and a directory in the index")
        if not slash:
            entries[rest] = entry
            i += 1
            continue
        inside = prefix + folder + b"/"
        j = i + 1
        while j < len(paths) and paths[j][0].startswith(inside):
            j += 1
        entries[folder] = (gitfiles.TREE_MODE, _write(objects, paths[i:j], inside))
        i = j
    return bytes.fromhex(gitfiles.write_object(objects, b"tree", gitfiles.tree_body(entries)))
