"""Rich renderings for people: task tables and details."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from stigmergy_cli import console
from stigmergy_cli.pool import Entry

STATE_STYLE = {
    "pending": "yellow",
    "active": "cyan",
    "done": "green",
    "failed": "red",
    "cancelled": "dim",
}


def task_table(entries: Sequence[Entry], *, show_reason: bool = False) -> None:
    """A table of tasks, in the order given (best score first)."""
    from rich.table import Table

    out = console.console()
    if not entries:
        out.print("No tasks.", style="dim")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", no_wrap=True, overflow="fold")
    table.add_column("STATUS", no_wrap=True)
    table.add_column("PRI", justify="right")
    table.add_column("SCORE", justify="right")
    table.add_column("TITLE", ratio=1, overflow="fold")
    table.add_column("WAITS FOR" if show_reason else "DEPENDS ON", overflow="fold")
    for entry in entries:
        task = entry.record.task
        state = entry.record.state
        if state == "pending":
            status = "[yellow]ready[/]" if entry.ready else "[magenta]blocked[/]"
        else:
            status = f"[{STATE_STYLE[state]}]{state}[/]"
        deps = (entry.blocked or "").removeprefix("waits for ") if show_reason else ", ".join(task.depends_on)
        role = f" [dim]@{task.role}[/]" if task.role else ""
        table.add_row(
            task.id,
            status,
            str(task.priority),
            f"{entry.score:.2f}",
            _escape(task.title) + role,
            _escape(deps),
        )
    out.print(table)


def task_detail(entry: Entry, root: Path) -> None:
    """Every field of one task, for `task show`."""
    task = entry.record.task
    out = console.console()
    state = entry.record.state
    out.print(f"[bold]{_escape(task.title)}[/]  [{STATE_STYLE[state]}]{state}[/]")
    rows: list[tuple[str, object]] = [
        ("id", task.id),
        ("file", entry.record.path.relative_to(root) if entry.record.path.is_relative_to(root) else entry.record.path),
        ("type", task.type),
        ("priority", task.priority),
        ("score", f"{entry.score:.3f} (pressure {entry.pressure:+.3f})"),
        ("ready", "yes" if entry.ready else (entry.blocked or "no")),
        ("role", task.role),
        ("labels", ", ".join(task.labels)),
        ("depends on", ", ".join(task.depends_on)),
        ("inputs", ", ".join(task.inputs)),
        ("outputs", ", ".join(task.outputs)),
        ("command", task.command),
        ("verify", task.verify),
        ("timeout", task.timeout),
        ("attempts", f"{task.attempts}" + (f" of {task.max_attempts}" if task.max_attempts else "")),
        ("skips", task.skip_count),
        ("created", _when(task.created_at) + (f" by {task.created_by}" if task.created_by else "")),
        ("updated", _when(task.updated_at)),
        ("result", task.result),
    ]
    for key, value in rows:
        if value in (None, "", 0) and key not in ("priority", "attempts"):
            continue
        out.print(f"  [dim]{key:<11}[/] {_escape(str(value))}")
    if task.description:
        out.print()
        out.print(_escape(task.description))


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
