"""The task model: fields, validation, id generation and the on-disk YAML form."""

from __future__ import annotations

import functools
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

from stigmergy_cli import defaults, yamlio
from stigmergy_cli.errors import InvalidInput

ID_PATTERN = r"[a-z0-9][a-z0-9._-]{0,63}"
_ID_RE = re.compile(ID_PATTERN)
# Roles, labels and types: short words that are safe in file names, refs and shell-free argv.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_NEWLINE_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

PRIORITY_WORDS = {"low": 20, "medium": 50, "high": 80, "urgent": 95}
MAX_TITLE = 200
MAX_TEXT = 64 * 1024  # description, command, verify
MAX_LIST = 256  # entries in depends_on, labels, inputs, outputs


def validate_id(value: Any, what: str = "task id") -> str:
    """Return `value` if it is a valid task id, else raise InvalidInput saying why."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, not {value!r}")
    if _ID_RE.fullmatch(value) and ".." not in value and not value.endswith((".", ".lock")):
        return value
    shown = value if len(value) <= 70 else value[:67] + "..."
    if len(value) > 64:
        why = f"is {len(value)} characters long (at most 64)"
    elif not value:
        why = "is empty"
    elif _CONTROL_RE.search(value) or any(c.isspace() for c in value):
        why = "contains whitespace or control characters"
    elif value.startswith(("-", ".", "_")):
        why = "must start with a lowercase letter or digit"
    elif ".." in value or value.endswith("."):
        why = "must not contain '..' or end with '.'"
    elif value.endswith(".lock"):
        why = "must not end with '.lock'"
    else:
        why = "may contain only a-z, 0-9, '.', '_' and '-'"
    raise InvalidInput(f"invalid {what} {shown!r}: it {why}")


def parse_priority(value: Any) -> int:
    """A priority from 0 to 100, or one of the words low, medium, high, urgent."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in PRIORITY_WORDS:
            return PRIORITY_WORDS[word]
        if re.fullmatch(r"[+-]?\d{1,4}", word):
            value = int(word)
        else:
            words = ", ".join(PRIORITY_WORDS)
            raise InvalidInput(f"invalid priority {value!r}: use 0-100 or one of {words}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"invalid priority {value!r}: use a whole number from 0 to 100")
    if not 0 <= value <= 100:
        raise InvalidInput(f"invalid priority {value}: must be from 0 to 100")
    return value


def slugify(title: str, max_len: int = 40) -> str:
    """A lowercase, dash-separated, id-safe rendering of `title` (may be empty)."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug[:max_len].rstrip("-")


def generate_id(title: str, salt: str | None = None) -> str:
    """Title slug plus a short hash, e.g. `implement-jwt-auth-3f2a1b`."""
    import hashlib  # here, not at the top: loading OpenSSL costs start-up time

    digest = hashlib.sha256(f"{title}\0{salt or os.urandom(8).hex()}".encode()).hexdigest()[:6]
    return f"{slugify(title) or 'task'}-{digest}"


@functools.lru_cache(maxsize=4096)  # tasks imported together share their times
def format_time(ts: float) -> str:
    """Seconds since the epoch as ISO 8601 UTC with milliseconds."""
    whole = math.floor(ts)
    millis = min(999, round((ts - whole) * 1000))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def parse_time(value: Any, what: str) -> float | None:
    """Accept ISO 8601 text, a YAML timestamp, epoch seconds, or null."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{what} must be a time, not {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"{what} is not an ISO 8601 time: {value!r}") from None
    else:
        raise InvalidInput(f"{what} must be a time, not {value!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _text(value: Any, what: str, *, limit: int, multiline: bool, required: bool = False) -> Any:
    if value is None:
        if required:
            raise InvalidInput(f"{what} is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {value!r}")
    if required and not value.strip():
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"{what} is {len(value)} characters long (at most {limit})")
    bad = _CONTROL_BUT_NEWLINE_RE if multiline else _CONTROL_RE
    if bad.search(value):
        kind = "control characters" if multiline else "newlines or control characters"
        raise InvalidInput(f"{what} must not contain {kind}")
    return value


def _number(value: Any, what: str, *, integer: bool, minimum: float, nullable: bool) -> Any:
    if value is None and nullable:
        return None
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "a whole number" if integer else "a number"
        raise InvalidInput(f"{what} must be {kind}, not {value!r}")
    if not math.isfinite(value):  # NaN would pass the minimum, and never time out
        raise InvalidInput(f"{what} must be a finite number, not {value!r}")
    if value < minimum:
        raise InvalidInput(f"{what} must be at least {minimum:g}, not {value!r}")
    return value


def _flag(value: Any, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise InvalidInput(f"{what} must be true or false, not {value!r}")


def _list(value: Any, what: str, check: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidInput(f"{what} must be a list, not {value!r}")
    if len(value) > MAX_LIST:
        raise InvalidInput(f"{what} has {len(value)} entries (at most {MAX_LIST})")
    out: list[Any] = []
    for item in value:
        checked = check(item)
        if checked not in out:
            out.append(checked)
    return out


def validate_name(value: Any, what: str) -> str:
    """A role, label or type: up to 64 letters, digits and . _ : - (safe in paths and argv)."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid {what} {value!r}: use up to 64 letters, digits, '.', '_', ':' or '-'"
        )
    return value


def _repo_path(value: Any, what: str) -> str:
    text = _text(value, what, limit=4096, multiline=False, required=True)
    parts = text.replace("\\", "/").split("/")
    if text.startswith("/") or ".." in parts:
        raise InvalidInput(f"{what} {text!r} must be a relative path inside the repository")
    return str(text)


@dataclass(frozen=True)
class Task:
    """One unit of work. The state is not a field: it is the directory the file sits in."""

    id: str
    title: str
    description: str | None = None
    type: str = "task"
    priority: int = PRIORITY_WORDS["medium"]
    role: str | None = None
    labels: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    command: str | None = None
    verify: str | None = None
    timeout: float | None = None
    max_attempts: int | None = None
    # Done even if its executor changes nothing (a task that only checks something); None:
    # the configured default (tasks.allow_empty).
    allow_empty: bool | None = None
    attempts: int = 0
    skip_count: int = 0
    pressure: float = 0.0
    pressure_at: float | None = None
    created_by: str | None = None
    created_at: float | None = None
    updated_at: float | None = None
    result: Mapping[str, Any] | None = None
    # Keys this version does not know, kept verbatim on rewrite (a newer version or a person
    # may have added them).
    extra: Mapping[str, Any] = field(default_factory=dict)

    def evolve(self, **changes: Any) -> Task:
        """A copy with `changes` applied (the model is immutable)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The on-disk document: schema first, known keys in a fixed order, then unknown keys."""
        doc: dict[str, Any] = {"schema": defaults.TASK_SCHEMA}
        for name in _FIELD_NAMES:
            doc[name] = getattr(self, name)
        for name in _TUPLE_FIELDS:
            doc[name] = list(doc[name])
        for name in _TIME_FIELDS:
            if doc[name] is not None:
                doc[name] = format_time(doc[name])
        if self.result is not None:
            doc["result"] = dict(self.result)
        doc.update(self.extra)
        return doc

    def to_native(self) -> list[Any]:
        """Field values in declaration order as plain JSON types, for the list cache."""
        values: list[Any] = [getattr(self, name) for name in _FIELD_NAMES]
        values.append(dict(self.extra))
        return values

    @classmethod
    def from_native(cls, values: list[Any]) -> Task:
        """Rebuild a task from `to_native` output (validated when the file was first read)."""
        if len(values) != len(_FIELD_NAMES) + 1:
            raise TypeError("not a cached task")  # the store then re-reads the file
        task = cls(*values)
        for name in _TUPLE_FIELDS:
            object.__setattr__(task, name, tuple(getattr(task, name)))
        return task

    def to_yaml(self) -> str:
        """The task file's text."""
        return yamlio.dump(self.to_dict())


_TIME_FIELDS = ("pressure_at", "created_at", "updated_at")
_TUPLE_FIELDS = ("labels", "depends_on", "inputs", "outputs")
_FIELD_NAMES = tuple(f.name for f in fields(Task) if f.name != "extra")
_KNOWN = frozenset(f.name for f in fields(Task)) - {"extra"} | {"schema"}


def task_from_dict(doc: Any, expected_id: str | None = None) -> Task:
    """Validate a parsed task document; raise InvalidInput naming the first bad field."""
    if not isinstance(doc, Mapping):
        raise InvalidInput(f"a task must be a mapping of fields, not {type(doc).__name__}")
    for key in doc:
        if not isinstance(key, str):
            raise InvalidInput(f"task field names must be text, not {key!r}")
    schema = doc.get("schema", defaults.TASK_SCHEMA)
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        raise InvalidInput(f"task schema must be a positive whole number, not {schema!r}")
    if schema > defaults.TASK_SCHEMA:
        raise InvalidInput(f"task schema {schema} is newer than this stigmergy understands")
    task_id = validate_id(doc.get("id"))
    if expected_id is not None and task_id != expected_id:
        raise InvalidInput(f"file name says id {expected_id!r} but the file says {task_id!r}")
    task = Task(
        id=task_id,
        title=_text(doc.get("title"), "title", limit=MAX_TITLE, multiline=False, required=True),
        description=_text(doc.get("description"), "description", limit=MAX_TEXT, multiline=True),
        type=validate_name(doc.get("type") or "task", "type"),
        priority=parse_priority(doc.get("priority", PRIORITY_WORDS["medium"])),
        role=None if doc.get("role") is None else validate_name(doc["role"], "role"),
        labels=tuple(_list(doc.get("labels"), "labels", lambda v: validate_name(v, "label"))),
        depends_on=tuple(
            _list(doc.get("depends_on"), "depends_on", lambda v: validate_id(v, "dependency id"))
        ),
        inputs=tuple(_list(doc.get("inputs"), "inputs", lambda v: _repo_path(v, "input"))),
        outputs=tuple(_list(doc.get("outputs"), "outputs", lambda v: _repo_path(v, "output"))),
        command=_text(doc.get("command"), "command", limit=MAX_TEXT, multiline=True),
        verify=_text(doc.get("verify"), "verify", limit=MAX_TEXT, multiline=True),
        timeout=_number(doc.get("timeout"), "timeout", integer=False, minimum=0, nullable=True),
        max_attempts=_number(
            doc.get("max_attempts"), "max_attempts", integer=True, minimum=1, nullable=True
        ),
        allow_empty=_flag(doc.get("allow_empty"), "allow_empty"),
        attempts=_number(
            doc.get("attempts", 0), "attempts", integer=True, minimum=0, nullable=False
        ),
        skip_count=_number(
            doc.get("skip_count", 0), "skip_count", integer=True, minimum=0, nullable=False
        ),
        pressure=float(
            _number(
                doc.get("pressure", 0.0), "pressure", integer=False, minimum=-1e9, nullable=False
            )
        ),
        pressure_at=parse_time(doc.get("pressure_at"), "pressure_at"),
        created_by=_text(doc.get("created_by"), "created_by", limit=200, multiline=False),
        created_at=parse_time(doc.get("created_at"), "created_at"),
        updated_at=parse_time(doc.get("updated_at"), "updated_at"),
        result=_mapping_or_none(doc.get("result"), "result"),
        extra={k: v for k, v in doc.items() if k not in _KNOWN},
    )
    if task.id in task.depends_on:
        raise InvalidInput(f"task {task.id!r} cannot depend on itself")
    if task.timeout is not None and task.timeout == 0:
        raise InvalidInput("timeout must be greater than 0 (or null for the configured default)")
    return task


def _mapping_or_none(value: Any, what: str) -> Mapping[str, Any] | None:
    if value is None or isinstance(value, Mapping):
        return value
    raise InvalidInput(f"{what} must be a mapping, not {value!r}")


def parse_task_text(text: bytes | str, expected_id: str | None = None) -> Task:
    """Parse and validate a task file's text."""
    try:
        doc = yamlio.load(text)
    except yamlio.YAMLSyntaxError as exc:
        raise InvalidInput(str(exc)) from None
    except UnicodeDecodeError:
        raise InvalidInput("not valid UTF-8") from None
    return task_from_dict(doc, expected_id)


def new_task(
    doc: Mapping[str, Any], *, now: float, created_by: str, existing_ids: Iterable[str] = ()
) -> Task:
    """A task as `task add` or `task import` creates it: id generated if absent, times set."""
    fields_in = dict(doc)
    if fields_in.get("id") is None:
        taken = set(existing_ids)
        title = fields_in.get("title")
        base = title if isinstance(title, str) else ""
        fields_in["id"] = generate_id(base)
        while fields_in["id"] in taken:
            fields_in["id"] = generate_id(base)
    for counter in ("attempts", "skip_count"):
        fields_in.setdefault(counter, 0)
    fields_in.setdefault("created_by", created_by)
    fields_in["created_at"] = now
    fields_in["updated_at"] = now
    return task_from_dict(fields_in)
