"""YAML in and out: safe loading only, LibYAML's C implementation when it is installed.

PyYAML is imported on first use: it costs 10-15 ms, and a warm `task list` needs no YAML at
all (tasks and the configuration come from their caches).
"""

from __future__ import annotations

import functools
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
