"""The pool as agents and people see it: each task with its score and why it may wait."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stigmergy_cli import decay, signals
from stigmergy_cli.config import PressureConfig
from stigmergy_cli.deps import Known, blocked_reason
from stigmergy_cli.environment import Environment
from stigmergy_cli.store import TaskRecord
from stigmergy_cli.tasks import Task


@dataclass(frozen=True)
class Entry:
    record: TaskRecord
    pressure: float
    score: float
    blocked: str | None  # why a pending task cannot start yet

    @property
    def ready(self) -> bool:
        """Pending with every dependency done and merged."""
        return self.record.state == "pending" and self.blocked is None


def is_merged(record: TaskRecord) -> bool:
    """A done task counts as merged unless its result says otherwise."""
    result = record.task.result
    return result is None or result.get("merged", True) is not False


def task_pressure(task: Task, now: float, cfg: PressureConfig, field: Mapping[str, float]) -> float:
    """Pressure on a task: signals targeting it (`field`, from signals.Field.pressures) plus any
    deposit written in the task file itself."""
    own = decay.pressure_now(task.pressure, task.pressure_at, now, cfg, key=task.id)
    return own + field.get(f"task:{task.id}", 0.0)


def build(
    records: Iterable[TaskRecord],
    now: float,
    cfg: PressureConfig,
    field: Mapping[str, float] | None = None,
) -> list[Entry]:
    """Score every task at `now` and explain what blocks each pending one; best first."""
    records = list(records)
    field = field or {}
    known = {r.task.id: Known(r.state, is_merged(r)) for r in records}
    entries = []
    for record in records:
        task = record.task
        pressure = task_pressure(task, now, cfg, field)
        blocked = blocked_reason(task, known) if record.state == "pending" else None
        entries.append(Entry(record, pressure, decay.score(task.priority, pressure), blocked))
    entries.sort(key=lambda e: (-e.score, e.record.task.created_at or 0.0, e.record.task.id))
    return entries


def entry_json(entry: Entry) -> dict[str, object]:
    """A task as programs see it (`--json`): the file's fields plus status, score and readiness."""
    doc: dict[str, object] = {
        "id": entry.record.task.id,
        "title": entry.record.task.title,
        "status": entry.record.state,
        "priority": entry.record.task.priority,
        "score": round(entry.score, 4),
        "pressure": round(entry.pressure, 4),
        "ready": entry.ready,
        "blocked": entry.blocked,
    }
    for key, value in entry.record.task.to_dict().items():
        doc.setdefault(key, value)
    doc.pop("schema", None)
    return doc


def field_pressures(env: Environment, now: float) -> dict[str, float]:
    """The pressure on every signal target now."""
    return signals.Field(env.layout, env.config.pressure).pressures(now)


def entries(
    env: Environment,
    records: list[TaskRecord],
    now: float,
    field: Mapping[str, float] | None = None,
) -> list[Entry]:
    """Entries for `records`, their readiness judged against their dependencies on disk."""
    ids = {r.task.id for r in records}
    outside = sorted({dep for r in records for dep in r.task.depends_on} - ids)
    related = [*records, *env.store.get_many(outside)]
    if field is None:
        field = field_pressures(env, now)
    built = build(related, now, env.config.pressure, field)
    return [e for e in built if e.record.task.id in ids]


def task_json(
    env: Environment, record: TaskRecord, now: float, field: Mapping[str, float] | None = None
) -> dict[str, object]:
    """One task as programs see it (`--json`, MCP results)."""
    (entry,) = entries(env, [record], now, field)
    return entry_json(entry)
