"""git's own files, read and written the way git reads and writes them (gitrepository-layout).

An agent touches refs and objects several times per task, and a git process costs 2-10 ms of
CPU, which is what limits many agents on a small machine (docs/design.md, "Less work per
task"). So the usual shapes are handled here: loose and packed refs, a linked worktree's
HEAD, loose objects and reflogs. Anything else (reftable, SHA-256 object names, a separate
git dir, a ref someone else is updating, an object already packed) raises NeedsGit, and
gitops asks git instead. Nothing here starts a process.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
SHA1_RE = re.compile(r"[0-9a-f]{40}")
STALE_REF_LOCK = 1.0  # seconds: a ref's lock file older than this was abandoned (_take_lock)
# A worktree in the middle of one of these has state only git knows how to conclude.
IN_PROGRESS = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply")


class NeedsGit(Exception):
    """The files are not in a shape handled here: let git do it."""


def common_dir(root: Path) -> Path:
    """The git dir of the repository whose main worktree is `root`, when its refs are plain
    files (loose refs and packed-refs)."""
    common = root / ".git"
    if not common.is_dir() or (common / "reftable").exists():
        raise NeedsGit("refs are not plain files")
    return common


def read_ref(common: Path, ref: str) -> str | None:
    """The object a ref such as refs/heads/main names (the loose file, else packed-refs);
    None when there is no such ref."""
    try:
        loose = (common / ref).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        loose = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise NeedsGit(str(exc)) from None
    if loose:
        if not SHA_RE.fullmatch(loose):  # a symbolic ref
            raise NeedsGit(f"{ref} is not a plain ref")
        return loose
    try:
        packed = (common / "packed-refs").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise NeedsGit(str(exc)) from None
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref:
            if not SHA_RE.fullmatch(sha):
                raise NeedsGit(f"packed-refs has an odd line for {ref}")
            return sha
    return None


def worktree_git_dir(worktree: Path) -> Path:
    """A linked worktree's own git dir (what its .git file points at)."""
    try:
        text = (worktree / ".git").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise NeedsGit(str(exc)) from None
    if not text.startswith("gitdir:"):
        raise NeedsGit(f"{worktree} is not a linked worktree")
    # Not resolved: it is only read from, and resolving costs a syscall per path component,
    # several times per task.
    return worktree / text.removeprefix("gitdir:").strip()


def head(git_dir: Path) -> str:
    """What a HEAD file says: "ref: refs/heads/<branch>", or a commit when detached."""
    try:
        return (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise NeedsGit(str(exc)) from None


@dataclass(frozen=True)
class Branch:
    """The branch a linked worktree has checked out, as its files say."""

    common: Path  # the repository's git dir
    git_dir: Path  # the worktree's own
    ref: str  # refs/heads/...
    commit: str  # where it points

    @property
    def reflogs(self) -> tuple[Path, Path]:
        """The logs git appends to when this branch moves: its own and the worktree's HEAD's."""
        return self.common / "logs" / self.ref, self.git_dir / "logs" / "HEAD"


def checked_out(root: Path, worktree: Path) -> Branch:
    """The branch the linked worktree `worktree` of `root` has checked out; NeedsGit when it
    is detached, has no commit yet, or has an operation to conclude (a merge...)."""
    common = common_dir(root)
    git_dir = worktree_git_dir(worktree)
    said = head(git_dir)
    if not said.startswith("ref: refs/heads/"):
        raise NeedsGit("HEAD is detached")
    if any((git_dir / name).exists() for name in IN_PROGRESS):
        raise NeedsGit("an operation is in progress in that worktree")
    ref = said.removeprefix("ref: ")
    commit = read_ref(common, ref)
    if commit is None:
        raise NeedsGit("the branch has no commit yet")
    return Branch(common, git_dir, ref, commit)


def checkout_of(common: Path, root: Path, ref: str) -> Path | None:
    """The worktree that has `ref` checked out, None if none has."""
    wanted = f"ref: {ref}"
    # git checks a branch out in one worktree at most, so finding it in the main one (the
    # usual case: the user's own checkout) ends the search without reading every agent's.
    if head(common) == wanted:
        return root
    found = None
    try:
        admins = list((common / "worktrees").iterdir())
    except FileNotFoundError:
        admins = []
    except OSError as exc:
        raise NeedsGit(str(exc)) from None
    for admin in admins:
        try:
            dot_git = Path((admin / "gitdir").read_text(encoding="utf-8").strip())
        except (OSError, UnicodeDecodeError) as exc:
            raise NeedsGit(str(exc)) from None
        if not dot_git.exists():
            raise NeedsGit("a worktree was deleted by hand")  # git judges whether it counts
        if found is None and head(admin) == wanted:
            found = dot_git.parent
    return found


def write_ref(
    common: Path,
    ref: str,
    new: str,
    *,
    old: str | None = None,
    reflog: tuple[Sequence[Path], str] | None = None,
) -> None:
    """Point `ref` at `new` as git does: `<ref>.lock` created exclusively (so git's own
    processes and ours exclude each other), written, then renamed over the ref.

    `old`: only if the ref is still there. `reflog`: the logs to append to, each only if it
    exists (as git does when core.logAllRefUpdates made it), and the entry's "<who> <when>\\t
    <why>" part. NeedsGit, leaving nothing behind, when the lock is taken, another ref is in
    the way, or the ref moved.
    """
    path = common / ref
    lock = path.with_name(f"{path.name}.lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _take_lock(lock)
    except OSError as exc:
        raise NeedsGit(str(exc)) from None
    written = False
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(f"{new}\n")
        if old is None or read_ref(common, ref) == old:
            if reflog is not None:
                logs, entry = reflog
                line = f"{old or '0' * len(new)} {new} {entry}\n".encode()
                for log in logs:
                    if log.exists():
                        with open(log, "ab") as out:
                            out.write(line)
            os.replace(lock, path)
            written = True
    except OSError as exc:
        raise NeedsGit(str(exc)) from None
    finally:
        if not written:
            with contextlib.suppress(OSError):
                lock.unlink()
    if not written:
        raise NeedsGit(f"{ref} moved")


def _take_lock(lock: Path) -> int:
    """Create a ref's lock file exclusively. One left behind by a writer killed between
    creating and renaming it would block the ref for good, git included, so a lock a second
    old is taken for abandoned and removed: git's writers and ours hold one for
    milliseconds, and git itself waits only 100 ms for one (core.filesRefLockTimeout)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        return os.open(lock, flags, 0o644)
    except FileExistsError:
        if time.time() - lock.stat().st_mtime < STALE_REF_LOCK:
            raise
        lock.unlink(missing_ok=True)
        return os.open(lock, flags, 0o644)


def stamp(now: float | None = None) -> str:
    """A date as git writes it in commits and reflogs: "<unix time> <+hhmm>"."""
    seconds = int(time.time() if now is None else now)
    offset = time.localtime(seconds).tm_gmtoff // 60
    return f"{seconds} {'-' if offset < 0 else '+'}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"


def commit_body(
    tree: str, parents: Sequence[str], author: str, committer: str, when: str, message: str
) -> bytes:
    """A commit object's content, byte for byte what `git commit-tree` writes (no signature,
    no encoding header: messages are UTF-8)."""
    text = f"tree {tree}\n" + "".join(f"parent {parent}\n" for parent in parents)
    text += f"author {author} {when}\ncommitter {committer} {when}\n\n{message}"
    return text.encode()


def write_object(objects: Path, kind: bytes, body: bytes) -> str:
    """Store a loose object (gitformat-loose): zlib-deflated "<kind> <size>\\0<body>" at
    objects/<2 hex>/<38 hex>, written under a temporary name and then linked into place,
    read-only, as git does. Like git by default (core.fsync), a loose object is not synced."""
    import hashlib  # loads OpenSSL: about 10 ms, so not for every command (see preload)
    import zlib

    raw = b"%s %d\0%s" % (kind, len(body), body)
    name = hashlib.sha1(raw, usedforsecurity=False).hexdigest()  # git's object names
    folder = objects / name[:2]
    path = folder / name[2:]
    if path.exists():
        return name
    folder.mkdir(exist_ok=True)
    temp = folder / f"tmp_obj_{os.getpid()}_{os.urandom(4).hex()}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(zlib.compress(raw))
        with contextlib.suppress(FileExistsError):  # the same object, made by someone else
            path.hardlink_to(temp)
    finally:
        temp.unlink()
    return name


def read_object(objects: Path, name: str, *, head: int | None = None) -> tuple[bytes, bytes]:
    """The kind and content of a loose object (gitformat-loose); NeedsGit if it is not stored
    loose (packed, in an alternate, missing) or is not an object. `head`: inflate only that
    many bytes, enough for a commit's first lines."""
    import zlib

    try:
        with open(f"{objects}/{name[:2]}/{name[2:]}", "rb") as fh:  # no Path: read per commit
            raw = fh.read()
        inflater = zlib.decompressobj()
        data = inflater.decompress(raw) if head is None else inflater.decompress(raw, head)
    except (OSError, zlib.error) as exc:
        raise NeedsGit(str(exc)) from None
    header, nul, body = data.partition(b"\0")
    kind, _, size = header.partition(b" ")
    if not nul or not size.isdigit() or (head is None and int(size) != len(body)):
        raise NeedsGit(f"object {name} is not stored as git stores objects")
    return kind, body


def commit_links(objects: Path, commit: str) -> tuple[str, tuple[str, ...]]:
    """The tree and the parents of a loose commit, from its first lines."""
    kind, body = read_object(objects, commit, head=4096)
    lines = body.split(b"\n")
    tree = lines[0][5:].decode("ascii", "replace")
    if kind != b"commit" or not lines[0].startswith(b"tree ") or not SHA1_RE.fullmatch(tree):
        raise NeedsGit(f"{commit} is not a commit")
    parents: list[str] = []
    for line in lines[1:-1]:  # the last line may be cut short by `head`
        if not line.startswith(b"parent "):
            return tree, tuple(parents)
        parents.append(line[7:].decode("ascii", "replace"))
    raise NeedsGit(f"commit {commit} has too many parents to read")


def tree_of(objects: Path, commit: str) -> str:
    """The tree of a commit stored as a loose object (NeedsGit once it is packed)."""
    return commit_links(objects, commit)[0]


def preload() -> None:
    """Load what writing objects needs, for a process about to write them at a moment when
    time counts."""
    import hashlib  # noqa: F401
    import zlib  # noqa: F401
