"""From a worktree to a result: prepare it for a task, keep leftovers, commit the outcome."""

from __future__ import annotations

from pathlib import Path

from stigmergy_cli import gitops, merge, worktrees
from stigmergy_cli.config import Config
from stigmergy_cli.paths import Layout
from stigmergy_cli.tasks import Task

ATTEMPTS = "refs/stigmergy/attempts/"


def save_leftovers(
    layout: Layout,
    worktree: Path,
    label: str,
    tip: str | None,
    now: float,
    *,
    clean: bool | None = None,
) -> str | None:
    """Keep whatever the worktree holds beyond the target (uncommitted changes or commits).

    Stored at refs/stigmergy/attempts/<label>/<time> so a reset never loses work; returns the
    ref, or None when there was nothing to keep. `clean`: the caller just asked git whether
    the worktree has changes.
    """
    head: str | None
    if clean is None:
        clean = gitops.is_clean(worktree)
    if clean:
        head = gitops.head_commit(worktree, layout.root)
        if head is None or head == tip:
            return None
        if tip is not None and gitops.is_ancestor(layout.root, head, tip):
            return None  # nothing beyond the target
        kept = gitops.run(
            [
                "for-each-ref",
                "--count=1",
                "--contains",
                head,
                "--format=%(refname)",
                "refs/stigmergy/",
            ],
            layout.root,
        )
        if kept.stdout.strip():
            return None  # already kept as a result, an attempt or a salvage
    else:
        head = gitops.commit_all(
            worktree, f"Leftovers of {label}\n", gitops.identity(worktree), root=layout.root
        )
        if head is None:
            return None
    ref = f"{ATTEMPTS}{label}/{int(now * 1000)}"
    gitops.keep_ref(layout.root, ref, head, reason="stigmergy keeps leftovers")
    return ref


def prepare(
    layout: Layout,
    cfg: Config,
    agent: str,
    task: Task,
    now: float,
    *,
    head_kept: bool = False,
    target_ref: str | None = None,
) -> Path:
    """The agent's worktree, ready for `task` (see prepare_at)."""
    return prepare_at(layout, cfg, agent, task, now, head_kept=head_kept, target_ref=target_ref)[0]


def prepare_at(
    layout: Layout,
    cfg: Config,
    agent: str,
    task: Task,
    now: float,
    *,
    head_kept: bool = False,
    target_ref: str | None = None,
) -> tuple[Path, str]:
    """The agent's worktree at the target's tip, and that tip, ready for `task` (a merge in
    progress for a conflict task), after keeping anything the previous task left behind.

    `head_kept`: the caller knows the worktree's HEAD is already kept and the worktree clean
    (it committed its last result, or saved its leftovers; see `clean_at_tip`), so it needs
    no further look. A clean worktree still at the tip needs no reset either.
    `target_ref`: where the target's tip is read (default: the local target branch).
    """
    worktree = worktrees.ensure(layout, agent, cfg.target)
    tip = gitops.ref_commit(layout.root, target_ref or f"refs/heads/{cfg.target}")
    if tip is None:
        raise worktrees.WorkspaceError(
            f"target branch {cfg.target!r} has no commit: commit something first, "
            "or check `target` in .stigmergy/config.yaml"
        )
    # A kept HEAD means the last task ended by committing everything (or keeping its
    # leftovers), and its executor's stragglers were stopped: nothing can have changed since.
    clean = head_kept or gitops.is_clean(worktree)
    if not (clean and head_kept):
        save_leftovers(layout, worktree, f"{agent}/before-{task.id}", tip, now, clean=clean)
    if not (clean and gitops.head_commit(worktree, layout.root) == tip):
        worktrees.reset(layout.root, worktree, tip, clean=clean)
    conflict = merge.conflict_of(task)
    if conflict is not None:
        worktrees.start_merge(worktree, conflict["theirs"])
    return worktree, tip


def clean_at_tip(layout: Layout, worktree: Path, target_ref: str) -> bool:
    """Is the worktree clean and at the target's tip (nothing to keep, nothing to reset)?"""
    root = layout.root
    tip = gitops.ref_commit(root, target_ref)
    return (
        tip is not None and gitops.head_commit(worktree, root) == tip and gitops.is_clean(worktree)
    )


def unresolved(worktree: Path, task: Task) -> list[str]:
    """Files of a conflict task that still hold conflict markers."""
    conflict = merge.conflict_of(task)
    if conflict is None:
        return []
    files = [f for f in conflict.get("files", []) if isinstance(f, str)]
    return worktrees.conflict_markers(worktree, files)


def commit(
    layout: Layout,
    cfg: Config,
    worktree: Path,
    task: Task,
    agent: str,
    *,
    base: str | None = None,
    target_ref: str | None = None,
) -> str | None:
    """Commit everything in the worktree as the task's result; None when nothing changed.

    Commits the agent made itself count too: the result is HEAD whenever it is not already on
    the target. `base`, when given, is the commit the worktree was reset to for this task.
    """
    message = merge.commit_message(task, agent)
    made = gitops.commit_all(worktree, message, gitops.identity(worktree), root=layout.root)
    if made is not None:
        return made
    head = gitops.head_commit(worktree, layout.root)
    if head is None or head == base:
        return None
    tip = gitops.ref_commit(layout.root, target_ref or f"refs/heads/{cfg.target}")
    if tip is not None and (head == tip or gitops.is_ancestor(layout.root, head, tip)):
        return None
    return head
