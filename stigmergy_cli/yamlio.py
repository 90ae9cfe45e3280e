"""YAML in and out: safe loading only, LibYAML's C implementation when it is installed."""

from __future__ import annotations

from typing import Any

import yaml

try:  # LibYAML is about ten times faster; PyYAML wheels normally ship it.
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
    _Dumper: type[yaml.SafeDumper] = yaml.CSafeDumper  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader
    _Dumper = yaml.SafeDumper

YAMLError = yaml.YAMLError


def load(text: str | bytes) -> Any:
    """Parse one YAML document with the safe loader."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def describe(exc: yaml.YAMLError) -> str:
    """One line saying what is wrong and where, for any YAML error."""
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}" if mark is not None else ""
    reason = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
    return " ".join(f"invalid YAML{at}: {reason}".split())


def dump(obj: Any) -> str:
    """Serialize to block-style YAML, keys in the given order, unicode kept readable."""
    return yaml.dump(
        obj,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
