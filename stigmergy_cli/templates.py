"""The files `init` writes and the agent prompt, rendered from templates/."""

from __future__ import annotations

from collections.abc import Mapping

from stigmergy_cli.paths import template_dir


def render(name: str, values: Mapping[str, str]) -> str:
    """Template `name` with each ${key} replaced.

    Plain replacement rather than string.Template: the templates also mention shell variables
    such as $STIGMERGY_PROMPT, which must stay as they are.
    """
    text = (template_dir() / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    return text
