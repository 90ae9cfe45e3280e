"""Whose failure is it: the real CLIs' words, read from the output of real runs."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from stigmergy_cli import executor, templates, triage
from stigmergy_cli.config import Config
from stigmergy_cli.executor import ExecResult

CFG = Config()


def _run(tmp_path: Path, script: str) -> ExecResult:
    return executor.run(
        script,
        cwd=tmp_path,
        env=executor.environment({}),
        log_path=tmp_path / "log",
        timeout=30,
        stop=lambda: False,
    )


def _prompt(title: str) -> str:
    fields = {"agent": "a", "worktree": "/w", "task_id": "t", "title": title}
    return templates.render("prompt.md", {**fields, "description": "", "verify_note": ""})


def _judge(
    tmp_path: Path, output: str, code: int, *, title: str = "Add a feature", quick: bool = True
) -> triage.Verdict | None:
    """The verdict on a real run that prints `output` (to stderr) and exits `code`."""
    run = _run(tmp_path, f"printf '%b\\n' {shlex.quote(output)} >&2; exit {code}")
    return triage.judge(
        run,
        prompt=_prompt(title),
        rate_limit_codes=CFG.rate_limit_exit_codes,
        rate_limit_patterns=CFG.rate_limit_patterns,
        quick=quick,
    )


# What each CLI printed (Claude Code 2.1, Codex 0.171, Aider 0.86), run against a local server
# imitating its provider; Aider wraps its lines at 80 columns.
RATE_LIMITED = [
    (
        "claude 429",
        (
            "API Error: Request rejected (429) · Number of request tokens has exceeded your "
            "per-minute rate limit"
        ),
        1,
    ),
    ("claude 529", "API Error: 529 Overloaded. This is a server-side issue, usually temporary", 1),
    ("claude 529s", "API Error: Repeated 529 Overloaded errors. The API is at capacity", 1),
    ("claude 500", "API Error: 500 Internal server error. This is a server-side issue", 1),
    ("codex 429", "ERROR: exceeded retry limit, last status: 429 Too Many Requests", 1),
    (
        "codex 500",
        "ERROR: We\u2019re currently experiencing high demand, which may cause temporary errors.",
        1,
    ),
    ("codex 503", "ERROR: unexpected status 503 Service Unavailable: The server is overloaded", 1),
    (
        "aider 429",
        (
            "litellm.RateLimitError: RateLimitError: OpenAIException - Rate limit reached for\n"
            "requests\nThe API provider has rate limited you. Try again later or check your "
            "quotas.\nRetrying in 32.0 seconds..."
        ),
        0,
    ),
    (
        "aider 500",
        (
            "litellm.InternalServerError: InternalServerError: OpenAIException - The server\n"
            "had an error\nThe API provider's servers are down or overloaded."
        ),
        0,
    ),
    ("plan limit", "Claude AI usage limit reached|1765432100", 1),
]
MISCONFIGURED = [
    (
        "claude as root",
        (
            "--dangerously-skip-permissions cannot be used with root/sudo privileges for "
            "security reasons"
        ),
        1,
    ),
    ("claude unknown flag", "error: unknown option '--no-such-flag'", 1),
    ("claude bad key", "Invalid API key · Fix external API key", 1),
    ("claude no key", "Not logged in · Please run /login", 1),
    ("claude credit", "Credit balance is too low", 1),
    (
        "codex unknown flag",
        (
            "error: unexpected argument '--full-auto' found\n\n  tip: to pass '--full-auto' as a "
            "value, use '-- --full-auto'\n\nUsage: codex exec [OPTIONS] [PROMPT]\n\n"
            "For more information, try '--help'."
        ),
        2,
    ),
    ("codex no key", "ERROR: Missing environment variable: `OPENAI_API_KEY`.", 1),
    ("codex bad key", "ERROR: unexpected status 401 Unauthorized: Incorrect API key provided", 1),
    ("codex quota", "ERROR: Quota exceeded. Check your plan and billing details.", 1),
    ("aider unknown flag", "             [FILE ...]\naider: error: unrecognized arguments: --x", 2),
    (
        "aider no key",
        (
            "litellm.AuthenticationError: AuthenticationError: OpenAIException - The api_key\n"
            "client option must be set either by passing api_key to the client or by setting\n"
            "The API provider is not able to authenticate you. Check your API key."
        ),
        0,
    ),
    (
        "aider quota",
        (
            "litellm.RateLimitError: RateLimitError: OpenAIException - You exceeded your\n"
            "current quota, please check your plan and billing details.\n"
            "The API provider has rate limited you. Try again later or check your quotas."
        ),
        0,
    ),
    (
        "anthropic credit",
        "API Error: 400 Your credit balance is too low to access the Anthropic API.",
        1,
    ),
]


@pytest.mark.parametrize(("case", "output", "code"), RATE_LIMITED, ids=[c[0] for c in RATE_LIMITED])
def test_what_the_clis_say_when_rate_limited_is_read_as_a_rate_limit(
    tmp_path: Path, case: str, output: str, code: int
) -> None:
    verdict = _judge(tmp_path, output, code)
    assert verdict is not None, case
    assert verdict.kind == triage.RATE_LIMITED


@pytest.mark.parametrize(
    ("case", "output", "code"), MISCONFIGURED, ids=[c[0] for c in MISCONFIGURED]
)
def test_what_the_clis_say_when_they_cannot_work_stops_the_agent(
    tmp_path: Path, case: str, output: str, code: int
) -> None:
    verdict = _judge(tmp_path, output, code)
    assert verdict is not None, case
    assert verdict.kind == triage.MISCONFIGURED
    assert "\n" not in verdict.why


def test_billing_is_a_misconfiguration_not_a_rate_limit_to_wait_out(tmp_path: Path) -> None:
    verdict = _judge(tmp_path, "Error: 429 insufficient_quota: quota exceeded", 1)
    assert verdict is not None
    assert verdict.kind == triage.MISCONFIGURED
    assert "billing" in verdict.why


def test_a_prompt_echoed_back_is_never_read_as_a_rate_limit(tmp_path: Path) -> None:
    # Codex echoes the prompt; the task is about rate limits, and it failed with a plain 500.
    title = "Fix the rate limit on the login endpoint"
    echo = f"user\n{_prompt(title)}\nERROR: unexpected status 500: internal"
    assert _judge(tmp_path, echo, 1, title=title) is None
    # ...while the same CLI's own rate limit, after that echo, still is one.
    limited = f"user\n{_prompt(title)}\nERROR: exceeded retry limit, last status: 429"
    verdict = _judge(tmp_path, limited, 1, title=title)
    assert verdict is not None
    assert verdict.kind == triage.RATE_LIMITED


def test_only_the_last_lines_are_read(tmp_path: Path) -> None:
    early = "warning: rate limit close\n" + "\n".join(f"step {n}" for n in range(40))
    assert _judge(tmp_path, early, 1) is None


def test_plain_failures_are_the_tasks(tmp_path: Path) -> None:
    assert _judge(tmp_path, "AssertionError: 429 != 430", 1) is None
    assert _judge(tmp_path, "FAILED tests/test_x.py::test_y", 1) is None
    # An unknown option after minutes of work is a test's output, not the CLI's refusal.
    assert _judge(tmp_path, "error: unknown option '--x'", 1, quick=False) is None


def test_a_missing_executor_is_the_agents_unless_the_task_brought_it(tmp_path: Path) -> None:
    run = _run(tmp_path, "./myexec.sh")
    assert run.code == 127

    def judge(own: bool) -> triage.Verdict | None:
        return triage.judge(
            run,
            prompt="",
            rate_limit_codes=(),
            rate_limit_patterns=(),
            quick=True,
            executor_is_agents=own,
        )

    verdict = judge(True)
    assert verdict is not None
    assert verdict.kind == triage.MISCONFIGURED
    assert "not found" in verdict.why
    assert judge(False) is None  # a task's own command that is missing: the task's failure


def test_a_configured_exit_code_is_a_rate_limit(tmp_path: Path) -> None:
    run = _run(tmp_path, "exit 75")
    verdict = triage.judge(
        run, prompt="", rate_limit_codes=(75,), rate_limit_patterns=(), quick=True
    )
    assert verdict is not None
    assert verdict.kind == triage.RATE_LIMITED


def test_a_success_that_mentions_a_rate_limit_is_judged_only_by_the_caller(tmp_path: Path) -> None:
    # The verdict is there; the agent acts on it only if the run changed nothing.
    verdict = _judge(tmp_path, "I fixed the rate limit handling.", 0)
    assert verdict is not None
    assert verdict.kind == triage.RATE_LIMITED
