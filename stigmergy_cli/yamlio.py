"""YAML in and out: safe loading only, LibYAML's C implementation when it is installed.

PyYAML is imported on first use: it costs 10-15 ms, and a warm `task list` needs no YAML at
all (tasks and the configuration come from their caches).
"""

from __future__ import annotations

import functools
import re
from types import ModuleType
from typing import Any


class YAMLSyntaxError(ValueError):
    """The text is not valid YAML; the message is one line saying what and where."""


@functools.cache
def _yaml() -> tuple[ModuleType, Any, Any]:
    import yaml

    # LibYAML is about ten times faster; PyYAML wheels normally ship it.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml, loader, dumper


def preload() -> None:
    """Import PyYAML now, for a process that will need it at a moment when time counts (an
    idle agent, before the work arrives)."""
    _yaml()


def load(text: str | bytes) -> Any:
    """Parse one YAML document with the safe loader; YAMLSyntaxError if it is not YAML."""
    yaml, loader, _ = _yaml()
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise YAMLSyntaxError(_describe(exc)) from None


def _describe(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}" if mark is not None else ""
    reason = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    return " ".join(f"invalid YAML{at}: {reason}".split())


def dump(obj: Any) -> str:
    """Serialize to block-style YAML, keys in the given order, unicode kept readable."""
    fast = _dump_simple(obj)
    return fast if fast is not None else _dump_pyyaml(obj)


# A mapping of plain words, numbers, lists of them and mappings of those (a task file) is
# written here, byte for byte as PyYAML writes it (tests/test_yamlio.py compares the two), in
# an eighth of the time: PyYAML's representer and serializer are Python (0.2-0.4 ms for a task),
# and every claim, every result and each task of an import writes one. Anything else goes to
# PyYAML.
_WIDTH = 100
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*(?: [A-Za-z0-9_./-]+)*")  # never an indicator
_QUOTABLE = re.compile(r"[A-Za-z0-9_.:+-]+")  # as '...' when it would read as another type
_STR_TAG = "tag:yaml.org,2002:str"


class _NeedsPyYAML(Exception):
    """Something the small writer is not sure to write exactly as PyYAML does."""


def _dump_simple(obj: Any) -> str | None:
    if type(obj) is not dict or not obj:
        return None
    lines: list[str] = []
    try:
        _mapping(obj, "", lines, set())
    except _NeedsPyYAML:
        return None
    return "\n".join(lines) + "\n"


def _mapping(obj: dict[Any, Any], indent: str, lines: list[str], seen: set[int]) -> None:
    for key, value in obj.items():
        if type(key) is not str or len(key) > _WIDTH or _plain(key) != key:
            raise _NeedsPyYAML  # PyYAML writes keys of 128 characters or more as "? key"
        head = f"{indent}{key}:"
        kind = type(value)
        if kind is not list and kind is not dict:
            lines.append(f"{head} {_scalar(value, len(head) + 1)}")
            continue
        if id(value) in seen:  # PyYAML writes an object met twice as an anchor and an alias
            raise _NeedsPyYAML
        seen.add(id(value))
        if not value:
            lines.append(f"{head} {'[]' if kind is list else '{}'}")
        elif kind is list:
            lines.append(head)
            lines.extend(f"{indent}- {_scalar(item, len(indent) + 2)}" for item in value)
        else:
            lines.append(head)
            _mapping(value, indent + "  ", lines, seen)


def _scalar(value: Any, column: int) -> str:
    """`value` as PyYAML writes it from `column` on."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        text = repr(value)
        if "." in text:  # not "1e+17", "inf" or "nan", which PyYAML writes its own way
            return text
    elif kind is str and column + len(value) <= _WIDTH:  # PyYAML folds longer lines
        word = _plain(value)
        if word is not None:
            return word
        if _QUOTABLE.fullmatch(value) and _resolves_to(value) != _STR_TAG:
            return f"'{value}'"
    raise _NeedsPyYAML


@functools.lru_cache(maxsize=4096)  # keys, states, names: the same words again and again
def _plain(text: str) -> str | None:
    """A plain-safe string as written (bare, or quoted if YAML would read it as another type:
    a bool, null, a number, a date), or None if it is not plain-safe."""
    if not _PLAIN.fullmatch(text):
        return None
    return text if _resolves_to(text) == _STR_TAG else f"'{text}'"


@functools.cache
def _resolver() -> Any:
    return _yaml()[0].resolver.Resolver()


def _resolves_to(text: str) -> str:
    yaml = _yaml()[0]
    tag: str = _resolver().resolve(yaml.ScalarNode, text, (True, False))
    return tag


def _dump_pyyaml(obj: Any) -> str:
    yaml, _, dumper = _yaml()
    text: str = yaml.dump(
        obj,
        Dumper=dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return text
