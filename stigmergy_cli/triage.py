"""Whose failure is it? The task's, the model provider's, or the agent's own.

An executor that fails is not always a task that failed. A provider that rate-limits or is
overloaded is waited out: the task goes back with nothing counted. A misconfigured agent (an
executor that does not exist, a CLI that refuses to run as root or does not know a flag, no
credentials, no credit) would fail every task it claims in seconds, so it stops with one line
that says what to fix, and the task goes back untouched. Anything else is the task's failure.

Only the last lines of the output are read, and never what the CLI echoes of the prompt:
Codex prints the prompt first, and a task titled "Fix the rate limit on the login endpoint"
must not read as a rate limit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from stigmergy_cli.executor import ExecResult

READ_LINES = 20  # the lines at the end of the output that a verdict may rest on
_MIN_ECHO = 8  # a prompt line shorter than this is too common to be taken for an echo

RATE_LIMITED, MISCONFIGURED = "rate-limited", "misconfigured"


@dataclass(frozen=True)
class Verdict:
    kind: str  # RATE_LIMITED | MISCONFIGURED
    why: str  # one line: what the executor said and, for a misconfiguration, what to do


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    advice: str
    quick_only: bool = False  # only when the executor failed within seconds of starting


# What the supported CLIs print when they cannot work at all, whatever the task.
_MISCONFIGURATIONS = (
    _Rule(
        re.compile(r"cannot be used with root/sudo privileges"),
        "Claude Code refuses --dangerously-skip-permissions as root: run the agent as "
        "another user, or set IS_SANDBOX=1 inside a container or VM you are happy for it "
        "to change",
    ),
    _Rule(
        re.compile(
            r"(?i)\b(unexpected argument|unknown option|unrecognized arguments?|"
            r"unknown (command|flag|argument))\b"
        ),
        "the executor's CLI does not know an option it was given: compare the executor "
        "with the installed version's --help",
        quick_only=True,
    ),
    _Rule(
        re.compile(
            r"(?i)invalid api key|incorrect api key|invalid x-api-key|authentication_error|"
            r"authenticationerror|invalid_api_key|\bnot logged in\b|please run /login|"
            r"missing (environment variable|api key)|api key (is )?(missing|not set|required)|"
            r"\b401 unauthorized\b|not able to authenticate you"
        ),
        "the model provider did not accept the executor's credentials: set its API key (or "
        "log the CLI in) for the user that runs the agent",
    ),
    _Rule(
        re.compile(
            r"(?i)credit balance is too low|insufficient_quota|exceeded your current quota|"
            r"quota exceeded|plan and billing details|billing (hard )?limit|payment required"
        ),
        "the model provider says the account is out of credit or quota: check its billing; "
        "waiting will not help",
    ),
)


def reading(tail: str, prompt: str) -> list[str]:
    """The last READ_LINES non-blank lines of `tail`, with any line of `prompt` echoed in
    them cut out."""
    echoes = sorted(
        {line.strip() for line in prompt.splitlines() if len(line.strip()) >= _MIN_ECHO},
        key=len,
        reverse=True,
    )
    lines = []
    for raw in tail.splitlines():
        line = raw
        for echo in echoes:
            if echo in line:
                line = line.replace(echo, "")
        if line.strip():
            lines.append(line.strip())
    return lines[-READ_LINES:]


def judge(
    result: ExecResult,
    *,
    prompt: str,
    rate_limit_codes: Sequence[int],
    rate_limit_patterns: Sequence[str],
    quick: bool,
    executor_is_agents: bool = True,
) -> Verdict | None:
    """Why the executor's run says nothing about its task, or None if it may.

    `quick`: it ended within seconds of starting. `executor_is_agents`: the command was the
    agent's executor, not one the task brings (a task's own broken command is its failure).
    """
    code = result.code
    if executor_is_agents and code in (126, 127):
        what = "was not found" if code == 127 else "cannot be run (is it executable?)"
        last = reading(result.tail, prompt)[-1:] or [""]
        return Verdict(
            MISCONFIGURED,
            f"the executor {what} (exit {code}: {last[0] or 'no output'}); a relative "
            "path in --exec is taken from the directory `agent run` starts in",
        )
    lines = reading(result.tail, prompt)
    for rule in _MISCONFIGURATIONS:
        if rule.quick_only and not (quick and code not in (None, 0)):
            continue
        line = _first_match(rule.pattern, lines)
        if line is not None:
            return Verdict(MISCONFIGURED, f"{rule.advice} (it said: {_short(line)})")
    if code is not None and code != 0 and code in rate_limit_codes:
        return Verdict(RATE_LIMITED, f"exit {code}")
    for pattern in rate_limit_patterns:
        line = _first_match(re.compile(pattern), lines)
        if line is not None:
            return Verdict(RATE_LIMITED, _short(line))
    return None


def _first_match(pattern: re.Pattern[str], lines: Sequence[str]) -> str | None:
    return next((line for line in lines if pattern.search(line)), None)


def _short(line: str, limit: int = 160) -> str:
    return line if len(line) <= limit else line[: limit - 3] + "..."
