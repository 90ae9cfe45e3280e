"""Rich renderings for people: task tables and details."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stigmergy_cli import console
from stigmergy_cli.pool import Entry

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from stigmergy_cli.demo import DemoReport
    from stigmergy_cli.metrics import Metrics
    from stigmergy_cli.snapshot import Snapshot
    from stigmergy_cli.sweep import SweepReport

STATUS_COLOR = {
    "ready": "yellow",
    "blocked": "magenta",
    "active": "cyan",
    "done": "green",
    "failed": "red",
    "cancelled": "dim",
}
STATE_STYLE = {
    "pending": "yellow",
    "active": "cyan",
    "done": "green",
    "failed": "red",
    "cancelled": "dim",
}


def task_table(entries: Sequence[Entry], *, show_reason: bool = False) -> None:
    """A table of tasks, in the order given (best score first).

    Written by hand rather than with rich.Table: rich takes seconds on 10,000 rows.
    """
    if not entries:
        console.say("No tasks.")
        return
    color = console.use_color()
    width = console.width()
    header = ("ID", "STATUS", "PRI", "SCORE", "TITLE", "WAITS FOR" if show_reason else "DEPENDS ON")
    rows = []
    for entry in entries:
        task = entry.record.task
        state = entry.record.state
        status = ("ready" if entry.ready else "blocked") if state == "pending" else state
        if state == "done" and (task.result or {}).get("outcome") == "unchanged":
            status = "done (no change)"
        if show_reason:
            deps = (entry.blocked or "").removeprefix("waits for ")
        else:
            deps = ", ".join(task.depends_on)
        title = task.title + (f" @{task.role}" if task.role else "")
        rows.append((task.id, status, str(task.priority), f"{entry.score:.2f}", title, deps))
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(4)]
    fixed = sum(widths) + 2 * 5
    title_width = max(20, min(max(len(r[4]) for r in rows), (width - fixed) * 2 // 3))
    deps_width = max(10, width - fixed - title_width)
    lines = [_row(header, widths, title_width, deps_width, bold=color)]
    lines.extend(_row(row, widths, title_width, deps_width, status_color=color) for row in rows)
    console.say("\n".join(lines))


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _row(
    cells: tuple[str, ...],
    widths: list[int],
    title_width: int,
    deps_width: int,
    *,
    bold: bool = False,
    status_color: bool = False,
) -> str:
    task_id, status, pri, score, title, deps = cells
    status_cell = status.ljust(widths[1])
    if status_color:
        status_cell = console.paint(status_cell, STATUS_COLOR.get(status.split()[0], ""))
    line = "  ".join(
        [
            task_id.ljust(widths[0]),
            status_cell,
            pri.rjust(widths[2]),
            score.rjust(widths[3]),
            _fit(title, title_width).ljust(title_width),
            _fit(deps, deps_width),
        ]
    ).rstrip()
    return console.paint(line, "bold") if bold else line


def task_detail(entry: Entry, root: Path) -> None:
    """Every field of one task, for `task show`."""
    task = entry.record.task
    out = console.console()
    state = entry.record.state
    out.print(f"[bold]{_escape(task.title)}[/]  [{STATE_STYLE[state]}]{state}[/]")
    rows: list[tuple[str, object]] = [
        ("id", task.id),
        (
            "file",
            entry.record.path.relative_to(root)
            if entry.record.path.is_relative_to(root)
            else entry.record.path,
        ),
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
        ("allow empty", None if task.allow_empty is None else str(task.allow_empty).lower()),
        (
            "attempts",
            f"{task.attempts}" + (f" of {task.max_attempts}" if task.max_attempts else ""),
        ),
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


def _plain_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
    return "\n".join(lines)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def agent_table(rows: list[dict[str, Any]]) -> None:
    """`agent list` for people."""
    if not rows:
        console.say("No agents have reported yet.")
        return
    table = [
        (
            str(r["agent"]),
            str(r["state"]),
            str(r.get("status") or "-"),
            str(r.get("task") or "-"),
            _ago(r.get("seconds_since_seen")),
            f"{r.get('done', 0)}/{r.get('failed', 0)}",
            str(r.get("problem") or ""),
        )
        for r in rows
    ]
    console.say(
        _plain_table(("AGENT", "STATE", "STATUS", "TASK", "SEEN", "DONE/FAILED", ""), table)
    )


def lock_table(rows: list[dict[str, Any]]) -> None:
    """`lock list` for people."""
    if not rows:
        console.say("No claims.")
        return
    table = [
        (
            str(r["task"]),
            str(r["agent"] or "?"),
            _ago(r["age"]),
            "stale: " + str(r["stale_reason"]) if r["stale"] else "live",
        )
        for r in rows
    ]
    console.say(_plain_table(("TASK", "AGENT", "AGE", "STATE"), table))


def sweep_report(report: SweepReport) -> None:
    """What a sweep did, one line per action."""
    verb = "would" if report.dry_run else "did"
    if not report.actions:
        console.say(f"Nothing to sweep ({report.live_locks} live claims).")
        return
    for action in report.actions:
        who = f" (agent {action.agent})" if action.agent else ""
        to = f" -> {action.to_state}" if action.to_state else ""
        console.say(f"{action.kind:<12} {action.target}{to}{who}: {action.reason}")
    console.say(
        f"Sweep {verb} {len(report.actions)} things; {report.live_locks} live claims left alone."
    )


def dashboard(snap: Snapshot) -> RenderableType:
    """The live view of `status` and `watch`: agents, tasks by state, ready queue, pressure,
    recent events."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    counts = snap.counts
    total = sum(counts.values())
    header = Text.assemble(
        ("stigmergy", "bold"),
        f"  target {snap.target}  ·  {total} tasks: ",
        *_count_parts(counts),
        f"  ·  {snap.claims} claimed  ·  {snap.merged} merged  ·  {snap.conflicts} conflicts",
    )
    agents = Table(box=None, header_style="bold", expand=False, pad_edge=False)
    for column in ("AGENT", "STATE", "STATUS", "TASK", "FOR", "DONE", "FAILED"):
        agents.add_column(column, no_wrap=column != "TASK", overflow="ellipsis")
    for a in snap.agents:
        style = {"alive": "green", "remote": "cyan", "stale": "yellow", "gone": "dim"}.get(
            a.state, "red"
        )
        task = f"{a.task}: {a.task_title}" if a.task and a.task_title else (a.task or "-")
        agents.add_row(
            a.agent,
            Text(a.state, style=style),
            a.status or "-",
            task,
            _ago(a.seconds_on_task) if a.task else "",
            str(a.done),
            str(a.failed),
        )
    if not snap.agents:
        agents.add_row("(no agent has reported yet)", "", "", "", "", "", "")
    ready = Table(box=None, header_style="bold", pad_edge=False)
    ready.add_column("READY", no_wrap=True)
    ready.add_column("SCORE", justify="right")
    ready.add_column("TITLE", overflow="ellipsis")
    for entry in snap.ready:
        ready.add_row(entry.record.task.id, f"{entry.score:.2f}", entry.record.task.title)
    if not snap.ready:
        ready.add_row("(nothing ready)", "", f"{snap.blocked} blocked" if snap.blocked else "")
    pressure = _pressure_table(snap.pressure, 12, 2, "(no pressure deposited)", no_wrap=True)
    recent = Table(box=None, header_style="bold", pad_edge=False, show_header=True)
    recent.add_column("RECENT", no_wrap=True)
    recent.add_column("EVENT", no_wrap=True)
    recent.add_column("", overflow="ellipsis")
    for event in snap.recent[-8:]:
        recent.add_row(
            time.strftime("%H:%M:%S", time.localtime(float(event.get("ts", 0)))),
            str(event["event"]),
            _event_detail(event),
        )
    parts: list[RenderableType] = [
        header,
        Panel(agents, title="agents", title_align="left", border_style="dim"),
        Panel(ready, title="queue", title_align="left", border_style="dim"),
        Panel(pressure, title="pressure", title_align="left", border_style="dim"),
        Panel(recent, title="events", title_align="left", border_style="dim"),
    ]
    if snap.problems:
        parts.append(
            Text(f"{snap.problems} unreadable task files: run `stigmergy sweep`", style="red")
        )
    return Group(*parts)


def _pressure_table(
    entries: Sequence[Entry], width: int, digits: int, empty: str, *, no_wrap: bool = False
) -> Table:
    """Pending tasks' pressure as bars scaled to the strongest (`width` blocks at most)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("PRESSURE", no_wrap=True)
    table.add_column("", no_wrap=no_wrap)
    top = max((abs(e.pressure) for e in entries), default=1.0) or 1.0
    for entry in entries:
        bar = "█" * max(1, round(width * abs(entry.pressure) / top))
        table.add_row(
            entry.record.task.id, Text(f"{bar} {entry.pressure:+.{digits}f}", style="magenta")
        )
    if not entries:
        table.add_row(empty, "")
    return table


def _count_parts(counts: dict[str, int]) -> list[tuple[str, str] | str]:
    parts: list[tuple[str, str] | str] = []
    for state, n in counts.items():
        if parts:
            parts.append(", ")
        parts.append((f"{n} {state}", STATE_STYLE.get(state, "")))
    return parts


def _event_detail(event: dict[str, Any]) -> str:
    keys = ("task", "agent", "outcome", "reason", "action", "title", "conflict_task")
    return "  ".join(f"{k}={event[k]}" for k in keys if event.get(k) not in (None, ""))


def event_line(event: dict[str, Any]) -> str:
    """One event for `stigmergy log`."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(event.get("ts", 0))))
    rest = {k: v for k, v in event.items() if k not in ("ts", "event")}
    detail = "  ".join(f"{k}={v}" for k, v in rest.items())
    return f"{when}  {event['event']:<14} {detail}".rstrip()


def demo_summary(result: DemoReport, *, kept: bool) -> None:
    """The end of `stigmergy demo`."""
    out = console.console()
    ok = "[green]✓[/]" if result.tests_passed else "[red]✗[/]"
    out.print()
    out.print(
        f"[bold]{result.done} of {result.tasks} tasks done[/] by {result.agents} agents, "
        f"{result.merges} merges into main, {result.failed} failed."
    )
    if result.conflicts:
        out.print(
            f"{result.conflicts} merge conflict found and turned into a task; "
            f"{result.resolved} resolved and merged."
        )
    else:
        out.print("No merge conflict this time (it needs two agents on the README at once).")
    out.print(
        f"{result.work_seconds:.1f} s of agent work in {result.makespan:.1f} s: "
        f"[bold]{result.speedup:.1f}x[/] one agent alone."
    )
    out.print(f"{ok} the package's tests on main: {result.tests_summary}")
    if kept:
        out.print(
            f"The repository is kept at {result.root}: try `git log --graph --oneline` "
            "and `stigmergy status` there."
        )
    out.print("Next: point agents at your own repository; see README.md and examples/.")


def stats(m: Metrics, snap: Snapshot) -> RenderableType:
    """`stigmergy stats` for people: counts, timings, throughput, agents and the pressure map."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    def seconds(value: float | None) -> str:
        return "-" if value is None else _ago(value)

    summary = Table(box=None, show_header=False, pad_edge=False)
    summary.add_column(style="dim")
    summary.add_column()
    rows = [
        ("tasks", ", ".join(f"{n} {state}" for state, n in snap.counts.items())),
        ("completions", f"{m.completions} ({m.per_minute:.1f} per minute)"),
        ("failures", f"{m.failures} ({m.retries} retried, {m.swept} reclaimed from dead agents)"),
        ("conflicts", str(m.conflicts)),
        ("rate limited", str(m.rate_limited)),
        ("mean wait", seconds(m.mean_wait) + " from added to claimed"),
        ("mean run", seconds(m.mean_run) + " from started to merged"),
        ("events", str(m.events)),
    ]
    for key, value in rows:
        summary.add_row(key, value)
    parts: list[RenderableType] = [summary]
    if m.throughput:
        peak = max(b["completions"] for b in m.throughput) or 1
        ticks = "▁▂▃▄▅▆▇█"
        line = "".join(ticks[min(7, int(7 * b["completions"] / peak))] for b in m.throughput)
        parts.append(
            Text.assemble(("throughput  ", "dim"), (line, "cyan"), f"  (peak {peak:g} per bucket)")
        )
    if m.agents:
        agents = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("AGENT", "CLAIMED", "DONE", "FAILED", "CONFLICTS"):
            agents.add_column(column, justify="left" if column == "AGENT" else "right")
        for name, counts in m.agents.items():
            agents.add_row(
                name, *(str(counts.get(k, 0)) for k in ("claimed", "done", "failed", "conflicts"))
            )
        parts.append(agents)
    pressure = _pressure_table(snap.pressure, 24, 3, "(no pressure on pending tasks)")
    parts.append(pressure)
    return Group(*parts)
