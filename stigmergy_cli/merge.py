"""Integrating a result into the target branch, fenced by the claim's token.

Under the integration lock: check the caller still holds the claim (else keep its commit under
refs/stigmergy/salvage/ and change nothing else); keep the result at
refs/stigmergy/results/<task>; three-way merge it with the target's tip using
`git merge-tree --write-tree` (nothing checked out is touched); then move the target with a
compare-and-swap. When the target is checked out (usually in the user's own worktree), that
checkout is fast-forwarded only if git can do it without touching local changes; otherwise
the task is left done with `merged: false` for `stigmergy integrate`. A conflict becomes a
`merge_conflict` task; resolving and merging it completes the original.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stigmergy_cli import claims, events, gitops, locks, signals, tasks
from stigmergy_cli.config import Config
from stigmergy_cli.errors import Conflict, GitError, StigmergyError
from stigmergy_cli.locks import NotOwner
from stigmergy_cli.oslock import FileLock
from stigmergy_cli.paths import Layout
from stigmergy_cli.store import TaskRecord, TaskStore
from stigmergy_cli.tasks import Task

RESULTS = "refs/stigmergy/results/"
SALVAGE = "refs/stigmergy/salvage/"
CONFLICT_TYPE = "merge_conflict"
_CAS_RETRIES = 8  # someone moved the target outside our lock (a person committing): try again


@dataclass(frozen=True)
class Outcome:
    """What became of a result."""

    kind: str  # merged | unchanged | conflict | deferred | fenced
    task: str
    result: str | None = None
    merge_commit: str | None = None
    conflict_task: str | None = None
    files: tuple[str, ...] = ()
    detail: str = ""

    @property
    def merged(self) -> bool:
        return self.kind in ("merged", "unchanged")


@dataclass
class _Target:
    branch: str
    ref: str = field(init=False)

    def __post_init__(self) -> None:
        self.ref = f"refs/heads/{self.branch}"


def conflict_task_id(task_id: str) -> str:
    """The deterministic id of the task that resolves `task_id`'s merge conflict."""
    candidate = f"{task_id}.conflict"
    if len(candidate) <= 64:
        return candidate
    import hashlib  # rarely needed; loading OpenSSL costs start-up time

    digest = hashlib.sha256(task_id.encode()).hexdigest()[:8]
    return f"{task_id[:45]}-{digest}.conflict"


def _trailers(task: Task, agent: str) -> str:
    return f"\n\nStigmergy-Task: {task.id}\nStigmergy-Agent: {agent}\n"


def commit_message(task: Task, agent: str) -> str:
    """The result commit's message: the title, and trailers naming the task and the agent."""
    body = (task.description or "").strip()
    return task.title + (f"\n\n{body}" if body else "") + _trailers(task, agent)


def integrate(
    store: TaskStore,
    cfg: Config,
    *,
    task_id: str,
    agent: str,
    token: str,
    result: str | None,
    now: float,
    log: str | None = None,
    base: str | None = None,
    dependants: Sequence[str] | None = None,
    task: Task | None = None,
) -> Outcome:
    """Land `result` (a commit, or None for "no change") for the claim `token` on `task_id`.

    `task`: the task as claimed, when the caller has it. Nobody else may write the file of a
    task under a live claim, so that saves reading it again under the lock.
    """
    layout = store.layout
    root = layout.root
    if result is not None:  # kept whatever happens next, and outside the lock
        gitops.keep_ref(
            root, f"{RESULTS}{task_id}", result, reason=f"stigmergy result of {task_id}"
        )
    with locks.integration_lock(layout) as held:
        info = locks.inspect(layout, task_id)
        if info is None or info.owner is None or info.owner.token != token:
            return salvage(store.layout, task_id, agent, token, result, now)
        record = _claimed_record(store, task_id, task)
        if record.state != "active":
            raise Conflict(f"task {task_id!r} is {record.state}, not active")
        outcome = _land(store, cfg, held, record.task, result, base)
        if outcome.kind == "conflict":
            conflict = _conflict_task(store, cfg, record.task, outcome, now)
            outcome = replace(outcome, conflict_task=conflict)
        # Under the lock: a resolution completes the task it resolved, another task; and a
        # task that conflicted is done before its conflict task can land, so that landing
        # finds it finished and unclaimed, ready to be marked merged.
        under_lock = record.task.type == CONFLICT_TYPE or outcome.kind == "conflict"
        if under_lock:
            _finish(store, cfg, record, agent, token, outcome, now, log)
    if not under_lock:
        # The rest concerns this task alone, which nobody may change while the claim is ours,
        # so the merges queued behind this one need not wait for it (a third of the time the
        # lock was held, in fsyncs). A sweep that breaks the claim meanwhile finds the
        # result on the target and records the merge itself.
        try:
            _finish(store, cfg, record, agent, token, outcome, now, log)
        except (NotOwner, FileNotFoundError):
            located = store.locate(task_id)
            if located is not None and located[0] == "active":
                raise
            return outcome  # recorded, and announced, by the sweep
    if outcome.merged:
        claims.nudge_dependants(store, cfg, task_id, agent, now, dependants)
    if outcome.conflict_task:
        claims.deposit(
            store,
            cfg,
            signals.CONFLICT,
            outcome.conflict_task,
            cfg.pressure.signal_conflict,
            agent,
            now,
        )
    events.append(
        layout.events,
        {"merged": events.MERGED, "unchanged": events.MERGED, "conflict": events.CONFLICT}.get(
            outcome.kind, events.SUCCEEDED
        ),
        now,
        task=task_id,
        agent=agent,
        outcome=outcome.kind,
        commit=outcome.merge_commit or outcome.result,
        conflict_task=outcome.conflict_task,
        files=list(outcome.files) or None,
        detail=outcome.detail or None,
    )
    return outcome


def _claimed_record(store: TaskStore, task_id: str, task: Task | None) -> TaskRecord:
    """The task under the caller's claim: `task` as claimed while its file is in active/, else
    the file as it is."""
    if task is not None:
        located = store.locate(task_id)
        if located is not None and located[0] == "active":
            return TaskRecord(task, "active", store.layout)
    return store.get(task_id)


def salvage(
    layout: Layout, task_id: str, agent: str, token: str, result: str | None, now: float
) -> Outcome:
    """A claim that is no longer ours: keep the work where nobody will merge it by accident
    (refs/stigmergy/salvage/<task>/<token>), and say so in the event log."""
    ref = f"{SALVAGE}{task_id}/{token}"
    if result is not None:
        gitops.keep_ref(layout.root, ref, result, reason=f"stigmergy salvage of {task_id}")
    detail = (
        f"claim lost before merging; work kept at {ref}" if result else "claim lost before merging"
    )
    events.append(
        layout.events,
        events.FAILED,
        now,
        task=task_id,
        agent=agent,
        reason=detail,
        salvage=ref,
    )
    return Outcome("fenced", task_id, result, detail=detail)


def _land(
    store: TaskStore,
    cfg: Config,
    held: FileLock,
    task: Task,
    result: str | None,
    base: str | None = None,
) -> Outcome:
    """Merge `result` into the target and move it; retry if the target moved meanwhile.
    `held`: the integration lock, which the caller holds.

    `base`, when given, is the target commit `result` was built on (the agent's worktree was
    reset to it), which saves asking git for the merge base under the lock.
    """
    root = store.layout.root
    target = _Target(cfg.target)
    for _ in range(_CAS_RETRIES):
        # One listing says where the target is checked out and at which commit.
        checkout, old = gitops.checkout_of(root, target.branch)
        if old is None:
            raise GitError(f"target branch {target.branch!r} has no commit")
        if result is None:
            return Outcome("unchanged", task.id, result, merge_commit=old)
        if base is None:
            base = gitops.merge_base(root, old, result)
            if base == result:  # already in the target
                return Outcome("unchanged", task.id, result, merge_commit=old)
        # With `base` from the agent, `result` is a new commit on top of it: a fast-forward
        # if the target has not moved since, otherwise a three-way merge.
        if base == old:
            new = result  # the result was built on the tip: fast-forward
        else:
            merged = gitops.merge_tree(root, old, result, base=base)
            if not merged.clean:
                return Outcome("conflict", task.id, result, files=merged.conflicts)
            # No Stigmergy-Task trailer here: the result commit carries it, exactly once.
            message = f"Merge {task.id}: {task.title}\n"
            new = gitops.commit_tree(
                root, merged.tree, [old, result], message, gitops.identity(root)
            )
        moved, why = _advance(root, target, old, new, checkout, held)
        if moved is None:
            continue  # the target moved under us: merge again with its new tip
        if not moved:
            assert checkout is not None  # only a checkout can be in the way
            detail = _in_the_way(target.branch, checkout, why)
            return Outcome("deferred", task.id, result, merge_commit=new, detail=detail)
        return Outcome("merged", task.id, result, merge_commit=new)
    raise StigmergyError(
        f"target branch {target.branch!r} kept moving; gave up merging {task.id!r}"
    )


def _advance(
    root: Path, target: _Target, old: str, new: str, checkout: Path | None, held: FileLock
) -> tuple[bool | None, str]:
    """Move the target from `old` to `new`: True done, False blocked in its checkout (with
    git's words), None if the target is no longer at `old`."""
    if checkout is None:
        moved = gitops.update_ref(root, target.ref, new, old, reason="stigmergy merge")
        return (True if moved else None), ""
    # A fast-forward in that worktree moves the branch, the index and the files together, and
    # refuses (changing nothing) if a local change would be overwritten. Hooks are not run.
    # git takes the integration lock with it: if we die while it runs, it runs on, and the
    # next holder's merge in the same checkout must not start until it is done (two
    # merges at once there have left the index without a file the branch has).
    proc = gitops.run(
        ["-c", "core.hooksPath=/dev/null", "merge", "--ff-only", "--quiet", new],
        checkout,
        check=False,
        pass_fds=(held.fileno(),),
    )
    if proc.returncode == 0:
        return True, ""
    return (None if gitops.rev_parse(checkout, "HEAD") != old else False), proc.stderr


_LOCKED = re.compile(r"Unable to create '([^']+\.lock)': File exists")


def _in_the_way(branch: str, checkout: Path, why: str) -> str:
    """Why the checkout of `branch` could not be brought forward (`why`: git's words), and
    what to do about it."""
    locked = _LOCKED.search(why)
    if locked:
        # git leaves its lock files behind when it is killed, and never removes them itself.
        return (
            f"{branch} is checked out in {checkout}, where {locked.group(1)} exists: a git "
            "command is running there, or one was killed; remove the file if none is "
            "running, then run `stigmergy integrate`"
        )
    return (
        f"{branch} is checked out with local changes in the way; "
        "run `stigmergy integrate` once they are committed or stashed"
    )


def _finish(
    store: TaskStore,
    cfg: Config,
    record: TaskRecord,
    agent: str,
    token: str,
    outcome: Outcome,
    now: float,
    log: str | None,
) -> None:
    """Record the outcome, move the task to done, release the claim."""
    record_done(store, cfg, record, agent, outcome, now, log)
    locks.remove(store.layout, record.task.id, token, agent)


def record_done(
    store: TaskStore,
    cfg: Config,
    record: TaskRecord,
    agent: str,
    outcome: Outcome,
    now: float,
    log: str | None,
) -> None:
    """Record `outcome` on the task and move it to done; a resolved conflict that merged also
    completes the task it resolved. The caller holds the task's claim.

    The originals first, then the outcome in the task's file, then the move: a crash at any
    point leaves this task active, with its result on the target or its outcome in its
    file, which the sweep finishes (sweep.Sweeper._requeue). Moved first, a crash would leave
    it done with no outcome, a deferred merge that `stigmergy integrate` never finds."""
    task = record.task
    if outcome.merged and task.type == CONFLICT_TYPE:
        _complete_originals(store, cfg, task, outcome, now)
    result = result_doc(outcome, agent, now, log)
    store.move(store.write(record, task.evolve(result=result, updated_at=now)), "done")


def recorded_outcome(task: Task, claimed_at: float) -> str | None:
    """The outcome of integration that `task` records for the claim made at `claimed_at`, if
    its holder got that far (see record_done); None otherwise."""
    result = task.result or {}
    outcome, finished = result.get("outcome"), result.get("finished_at")
    if outcome not in ("merged", "unchanged", "conflict", "deferred"):
        return None
    if isinstance(finished, bool) or not isinstance(finished, int | float):
        return None
    return outcome if finished >= claimed_at else None  # else an earlier attempt's


def unrecorded_outcome(
    store: TaskStore, cfg: Config, task_id: str, claimed_at: float | None = None
) -> Outcome | None:
    """What the claim's integration did, if it got as far as the target (the result merged)
    or a conflict task (the result conflicted), and whoever integrated stopped before
    recording so: a crash between the two. `claimed_at`: the claim's time, when known; a
    result committed before it (git's whole seconds) is an earlier attempt's, say one
    merged, cancelled by hand and retried."""
    root = store.layout.root
    result = gitops.ref_commit(root, f"{RESULTS}{task_id}")
    if result is None:
        return None
    tip = gitops.ref_commit(root, _Target(cfg.target).ref)
    if tip is not None and gitops.is_ancestor(root, result, tip):
        outcome: Outcome | None = Outcome("merged", task_id, result)
    else:
        outcome = _conflicted(store, task_id, result)
    return outcome if outcome is not None and _made_since(root, result, claimed_at) else None


def _conflicted(store: TaskStore, task_id: str, result: str) -> Outcome | None:
    """The conflict `result` met, if the task's merge_conflict task names it."""
    conflict_id = conflict_task_id(task_id)
    if store.locate(conflict_id) is None:
        return None
    try:
        section = conflict_of(store.get(conflict_id).task)
    except StigmergyError:  # unreadable: the sweep quarantines it, and this task goes back
        return None
    if section is None or section["theirs"] != result:
        return None
    files = tuple(f for f in section.get("files", []) if isinstance(f, str))
    return Outcome("conflict", task_id, result, conflict_task=conflict_id, files=files)


def _made_since(root: Path, commit: str, claimed_at: float | None) -> bool:
    """Was `commit` made no earlier than `claimed_at` (git's whole seconds)?"""
    if claimed_at is None:
        return True
    made = gitops.run(["log", "-1", "--format=%ct", commit], root).stdout.strip()
    return made.isdigit() and int(made) >= int(claimed_at)


def result_doc(outcome: Outcome, agent: str, now: float, log: str | None) -> dict[str, Any]:
    """The `result:` a finished task records: what became of it, and where its work is."""
    doc = {
        "outcome": outcome.kind,
        "agent": agent,
        "commit": outcome.result,
        "merge_commit": outcome.merge_commit,
        "merged": outcome.merged,
        "conflict_task": outcome.conflict_task,
        "finished_at": now,
        "log": log,
    }
    return {key: value for key, value in doc.items() if value is not None}


def _conflict_task(store: TaskStore, cfg: Config, task: Task, outcome: Outcome, now: float) -> str:
    """Create (once) the high-priority task that resolves this conflict."""
    conflict_id = conflict_task_id(task.id)
    if store.locate(conflict_id) is not None:
        return conflict_id
    conflict = tasks.new_task(conflict_doc(task, outcome, cfg), now=now, created_by="stigmergy")
    try:
        store.add(conflict, now)
    except Conflict:  # made by someone else a moment ago
        pass
    return conflict_id


def conflict_doc(task: Task, outcome: Outcome, cfg: Config) -> dict[str, Any]:
    """The fields of the task that resolves `task`'s conflicting `outcome`."""
    files = (
        "\n".join(f"- {name}" for name in outcome.files) or "- (git listed no file; see the merge)"
    )
    description = (
        f"Merging the result of task {task.id!r} ({task.title}) into {cfg.target} conflicted.\n"
        f"Conflicting files:\n{files}\n\n"
        f"Your worktree has the merge in progress with the conflict markers in place. Resolve "
        f"every conflict so that both changes are kept, and leave no conflict markers.\n"
    )
    if task.description:
        description += f"\nThe original task:\n{task.description}\n"
    return {
        "id": conflict_task_id(task.id),
        "title": f"Resolve merge conflict: {task.title}"[: tasks.MAX_TITLE],
        "description": description,
        "type": CONFLICT_TYPE,
        "priority": cfg.conflict_priority,
        "role": task.role,
        "verify": task.verify,
        "timeout": task.timeout,
        "labels": list(task.labels),
        "conflict": {
            "task": task.id,
            "theirs": outcome.result,
            "files": list(outcome.files),
        },
    }


def conflict_of(task: Task) -> dict[str, Any] | None:
    """The `conflict:` section of a merge_conflict task (which result to merge), if valid."""
    section = task.extra.get("conflict")
    if task.type != CONFLICT_TYPE or not isinstance(section, dict):
        return None
    if not isinstance(section.get("theirs"), str) or not isinstance(section.get("task"), str):
        return None
    return section


def _complete_originals(
    store: TaskStore, cfg: Config, task: Task, outcome: Outcome, now: float
) -> None:
    """A resolved conflict landed: the task it resolved (and so on up the chain) is merged.

    An original still claimed (by a holder that died finishing it) is passed over, and the
    sweep marks it when it removes that claim (complete_resolved)."""
    current: Task | None = task
    while current is not None and (section := conflict_of(current)) is not None:
        original_id = section["task"]
        again = True
        try:
            with locks.exclusive(
                store.layout, original_id, who="integrate", now=now, lease=60, integration_held=True
            ):
                record = store.get(original_id)
                result = dict(record.task.result or {})
                again = result.get("merged") is True and result.get("merged_by") == task.id
                if not again:  # else recorded already: the sweep is finishing after a crash
                    result.update(merged=True, merged_by=task.id)
                    if outcome.merge_commit is not None:
                        result["merge_commit"] = outcome.merge_commit
                    store.write(record, record.task.evolve(result=result, updated_at=now))
        except Conflict:  # claimed: read it all the same, for the originals above it
            try:
                record = store.get(original_id)
            except StigmergyError:
                return
        except StigmergyError:
            return
        if not again:
            events.append(store.layout.events, events.MERGED, now, task=original_id, via=task.id)
            claims.nudge_dependants(store, cfg, original_id, task.id, now)
        current = record.task


def complete_resolved(store: TaskStore, cfg: Config, task_id: str, now: float) -> None:
    """Mark `task_id` merged if it is done after a conflict that has since been resolved and
    merged (by its conflict task, or one resolving that, and so on): for a task whose claim
    outlived it, passed over when the resolution landed. The caller holds the integration
    lock."""
    record = store.get(task_id)
    result = record.task.result or {}
    if record.state != "done" or result.get("outcome") != "conflict" or result.get("merged"):
        return
    for _ in range(64):  # a conflict of a conflict of ...: never a cycle, but stay bounded
        resolver_id = result.get("conflict_task")
        if not isinstance(resolver_id, str):
            return
        try:
            resolver = store.get(resolver_id)
        except StigmergyError:  # deleted or broken by hand: nothing to complete from
            return
        result = resolver.task.result or {}
        if resolver.state != "done":
            return
        if result.get("outcome") == "merged":
            commit = result.get("merge_commit") or result.get("commit")
            landed = Outcome("merged", resolver_id, merge_commit=commit or None)
            _complete_originals(store, cfg, resolver.task, landed, now)
            return


def finish_deferred(store: TaskStore, cfg: Config, task_id: str, now: float) -> Outcome:
    """Try again to land a done task whose merge was deferred (its checkout was in the way)."""
    layout = store.layout
    with (
        locks.integration_lock(layout) as held,
        locks.exclusive(
            layout, task_id, who="integrate", now=now, lease=cfg.lease, integration_held=True
        ),
    ):
        record = store.get(task_id)
        result = dict(record.task.result or {})
        if record.state != "done" or result.get("outcome") != "deferred" or result.get("merged"):
            raise Conflict(f"task {task_id!r} has no merge waiting")
        commit = result.get("commit")
        commit = commit if isinstance(commit, str) else None
        outcome = _land(store, cfg, held, record.task, commit)
        if outcome.kind == "conflict":
            outcome = replace(
                outcome, conflict_task=_conflict_task(store, cfg, record.task, outcome, now)
            )
        if outcome.merged and record.task.type == CONFLICT_TYPE:  # first, as in record_done
            _complete_originals(store, cfg, record.task, outcome, now)
        result.update(
            outcome=outcome.kind,
            merged=outcome.merged,
            merge_commit=outcome.merge_commit,
            conflict_task=outcome.conflict_task,
        )
        store.write(
            record,
            record.task.evolve(
                result={k: v for k, v in result.items() if v is not None}, updated_at=now
            ),
        )
    if outcome.merged:
        events.append(
            layout.events,
            events.MERGED,
            now,
            task=task_id,
            commit=outcome.merge_commit,
            via="integrate",
        )
    return outcome


def deferred(store: TaskStore, now: float) -> list[str]:
    """Ids of done tasks whose merge is waiting for `stigmergy integrate`."""
    found = []
    for record in store.scan(now, states=("done",)).records:
        result = record.task.result or {}
        if result.get("outcome") == "deferred" and not result.get("merged"):
            found.append(record.task.id)
    return found
