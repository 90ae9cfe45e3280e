"""Dependencies between tasks: which are unknown, which close a cycle, and why a task waits."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from stigmergy_cli.errors import Conflict
from stigmergy_cli.tasks import Task


@dataclass(frozen=True)
class Known:
    """What readiness needs to know about a dependency."""

    state: str
    merged: bool


def check_acyclic(new: Mapping[str, Task], lookup: Callable[[str], Task | None]) -> None:
    """Refuse if adding `new` would close a dependency cycle; visits only their ancestors."""
    finished: set[str] = set()
    for start in new:
        if start in finished:
            continue
        # Iterative depth-first search; `path` is the chain from `start` to the current node.
        path = [start]
        on_path = {start}
        pending = [list(_deps(start, new, lookup))]
        while pending:
            if not pending[-1]:
                pending.pop()
                node = path.pop()
                on_path.discard(node)
                finished.add(node)
                continue
            nxt = pending[-1].pop()
            if nxt in on_path:
                cycle = [*path[path.index(nxt) :], nxt]
                raise Conflict(f"dependency cycle: {' -> '.join(cycle)}")
            if nxt in finished:
                continue
            path.append(nxt)
            on_path.add(nxt)
            pending.append(list(_deps(nxt, new, lookup)))


def _deps(
    task_id: str, new: Mapping[str, Task], lookup: Callable[[str], Task | None]
) -> tuple[str, ...]:
    task = new.get(task_id) or lookup(task_id)
    return task.depends_on if task is not None else ()


def blocked_reason(task: Task, known: Mapping[str, Known]) -> str | None:
    """Why `task` cannot start yet, or None when every dependency is done and merged."""
    waits: list[str] = []
    for dep in task.depends_on:
        info = known.get(dep)
        if info is None:
            waits.append(f"{dep} (unknown)")
        elif info.state != "done":
            waits.append(f"{dep} ({info.state})")
        elif not info.merged:
            waits.append(f"{dep} (done, not merged yet)")
    return "waits for " + ", ".join(waits) if waits else None
