"""One git worktree per agent, at .stigmergy/workspaces/<agent> on branch stigmergy/<agent>.

Worktrees are created one at a time under a flock: parallel `git worktree add` races on
.git/config.lock (seen in several agent runners), and `--no-track` keeps it from writing
upstream config at all. A worktree is reset to the target's tip before each task; whatever
it held was saved under refs/stigmergy/ first, so the reset loses nothing.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from stigmergy_cli import gitfiles, gitops
from stigmergy_cli.errors import StigmergyError
from stigmergy_cli.oslock import FileLock
from stigmergy_cli.paths import Layout

BRANCH_PREFIX = "stigmergy/"


class WorkspaceError(StigmergyError):
    """An agent's worktree cannot be created or used."""


def branch(agent: str) -> str:
    """The branch an agent's worktree has checked out."""
    return f"{BRANCH_PREFIX}{agent}"


def is_worktree(path: Path) -> bool:
    """Is `path` a linked worktree (its .git is a file pointing into the repository)?"""
    return (path / ".git").is_file()


def ensure(layout: Layout, agent: str, target: str) -> Path:
    """The agent's worktree, created from the target's tip if it does not exist yet."""
    path = layout.workspace(agent)
    if is_worktree(path):
        return path
    with FileLock(layout.worktree_lock):
        if is_worktree(path):  # another process of this agent made it while we waited
            return path
        root = layout.root
        if path.exists() and any(path.iterdir()):
            raise WorkspaceError(f"{path} exists and is not a git worktree; move it away first")
        gitops.run(["worktree", "prune"], root)  # forget worktrees whose directory was deleted
        base = gitops.rev_parse(root, f"refs/heads/{target}")
        if base is None:
            raise WorkspaceError(
                f"target branch {target!r} has no commit yet; commit something first"
            )
        name = branch(agent)
        if gitops.rev_parse(root, f"refs/heads/{name}") is not None:
            # Keep the branch (it may hold work); check it out again.
            gitops.run(["worktree", "add", "--quiet", str(path), name], root)
        else:
            gitops.run(
                ["worktree", "add", "--quiet", "--no-track", "-b", name, str(path), base], root
            )
    return path


def reset(root: Path, path: Path, commit: str, *, clean: bool = False) -> None:
    """Make the worktree `path` of the repository `root` exactly `commit`: no local change,
    no merge in progress.

    `clean`: the worktree is known to have no change at all, untracked files included, so it
    only needs moving.
    """
    if clean and gitops.move_clean_worktree(root, path, commit):
        return
    gitops.run(["reset", "--hard", "--quiet", commit], path)
    if not clean:
        gitops.run(["clean", "-ffdq"], path)


def clear_abandoned_locks(layout: Layout, agent: str) -> list[Path]:
    """Remove the lock files git leaves in an agent's worktree when it is killed mid-command
    (the agent's whole process group killed: a closed terminal, a stopped container); git
    never removes them, and every later `add`, `reset` or `commit` there would fail. Only
    for the agent's one process, before it runs anything there: nobody else uses its
    worktree, its index, its HEAD or its branch. Returns what was removed."""
    path = layout.workspace(agent)
    try:
        git_dir = gitfiles.worktree_git_dir(path)
        common = gitfiles.common_dir(layout.root)
    except gitfiles.NeedsGit:
        return []
    removed = []
    for lock in (
        git_dir / "index.lock",
        git_dir / "HEAD.lock",
        common / "refs" / "heads" / f"{branch(agent)}.lock",
    ):
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
            removed.append(lock)
    return removed


def start_merge(path: Path, theirs: str) -> None:
    """Begin merging `theirs` into the worktree's HEAD and leave the conflicts in the files."""
    ident = gitops.identity(path)
    proc = gitops.run(
        [*ident, "merge", "--no-ff", "--no-commit", "--no-verify", theirs], path, check=False
    )
    if proc.returncode not in (0, 1):
        raise WorkspaceError(f"could not start the merge of {theirs[:12]}: {proc.stderr.strip()}")


def merge_in_progress(path: Path) -> bool:
    """Is a merge waiting to be concluded in this worktree?"""
    return (
        gitops.run(["rev-parse", "-q", "--verify", "MERGE_HEAD"], path, check=False).returncode == 0
    )


def conflict_markers(path: Path, files: list[str]) -> list[str]:
    """The files among `files` that still hold conflict markers."""
    marked = []
    for name in files:
        try:
            text = (path / name).read_bytes()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith((b"<<<<<<< ", b">>>>>>> ")) or line == b"=======":
                marked.append(name)
                break
    return marked


def agents_with_worktrees(layout: Layout) -> list[str]:
    """Agents that have a worktree under .stigmergy/workspaces/."""
    try:
        return sorted(p.name for p in layout.workspaces.iterdir() if is_worktree(p))
    except FileNotFoundError:
        return []


def remove(layout: Layout, agent: str) -> None:
    """Remove an agent's worktree and branch; save anything unmerged first
    (results.save_leftovers)."""
    root = layout.root
    path = layout.workspace(agent)
    with FileLock(layout.worktree_lock):
        if is_worktree(path):
            gitops.run(["worktree", "remove", "--force", str(path)], root)
        gitops.run(["worktree", "prune"], root)
        gitops.run(["branch", "-D", "--quiet", branch(agent)], root, check=False)
