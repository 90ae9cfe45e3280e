"""The MCP server, driven by the mcp package's own client over stdio, as an agent would."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from stigmergy_cli.environment import open_environment
from stigmergy_cli.sweep import sweep

from .conftest import Cli, git, snapshot

STIGMERGY = Path(sys.executable).parent / "stigmergy"


def _params(root: Path) -> StdioServerParameters:
    return StdioServerParameters(command=str(STIGMERGY), args=["mcp"], cwd=str(root))


async def _call(client: Client, tool: str, args: dict[str, Any]) -> tuple[bool, Any]:
    result = await client.call_tool(tool, args)
    if result.is_error:
        return True, result.content[0].text  # type: ignore[union-attr]
    return False, result.structured_content


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def _fast_leases(root: Path) -> None:
    config = root / ".stigmergy" / "config.yaml"
    text = config.read_text().replace("heartbeat_interval: 5", "heartbeat_interval: 0.2")
    config.write_text(
        text.replace("lease: 60", "lease: 1").replace("session_lease: 1800", "session_lease: 1.5")
    )


def test_the_tools_claim_work_and_complete(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "Write notes", "--id", "notes", "--verify", "test -f notes.txt")

    async def session() -> None:
        async with Client(_params(in_repo)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert names == {
                "list_ready",
                "show_task",
                "add_task",
                "claim",
                "heartbeat",
                "complete",
                "fail",
                "release",
                "deposit_signal",
                "status",
            }
            error, ready = await _call(client, "list_ready", {})
            assert not error
            assert [t["id"] for t in ready["result"]] == ["notes"]
            error, claimed = await _call(client, "claim", {"agent": "mcp-1"})
            assert not error
            assert claimed["id"] == "notes"
            Path(claimed["worktree"], "notes.txt").write_text("from MCP\n")
            error, done = await _call(client, "complete", {"agent": "mcp-1", "task_id": "notes"})
            assert not error, done
            assert (done["outcome"], done["merged"]) == ("merged", True)
            error, status = await _call(client, "status", {})
            assert status["tasks"]["done"] == 1

    _run(session())
    assert (in_repo / "notes.txt").read_text() == "from MCP\n"


BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    ("claim", {"agent": "../x"}, ["task", "claim", "--agent", "../x"]),
    ("claim", {"agent": "a", "task_id": "-rf"}, ["task", "claim", "--agent", "a", "--", "-rf"]),
    ("claim", {"agent": "a", "task_id": "ghost"}, ["task", "claim", "ghost", "--agent", "a"]),
    ("show_task", {"task_id": "ghost"}, ["task", "show", "ghost"]),
    ("add_task", {"title": "x", "task_id": "existing"}, ["task", "add", "x", "--id", "existing"]),
    ("add_task", {"title": "x", "depends_on": ["ghost"]}, ["task", "add", "x", "--dep", "ghost"]),
    ("add_task", {"title": "x", "priority": "101"}, ["task", "add", "x", "--priority", "101"]),
    ("add_task", {"title": "two\nlines"}, ["task", "add", "two\nlines"]),
    (
        "release",
        {"agent": "a", "task_id": "existing"},
        ["task", "release", "existing", "--agent", "a"],
    ),
    ("fail", {"agent": "a", "task_id": "existing"}, ["task", "fail", "existing", "--agent", "a"]),
    (
        "complete",
        {"agent": "a", "task_id": "existing"},
        ["task", "done", "existing", "--agent", "a"],
    ),
    (
        "deposit_signal",
        {"kind": "x", "intensity": 3, "task_id": "existing"},
        ["signal", "deposit", "x", "--task", "existing", "-i", "3"],
    ),
    ("deposit_signal", {"kind": "x"}, ["signal", "deposit", "x"]),
]


def test_every_refusal_matches_the_cli_and_writes_nothing(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "Existing", "--id", "existing")
    expected = []
    for _tool, _args, cli_args in BAD:
        before = snapshot(in_repo)
        result = cli(*cli_args)
        assert result.code in (1, 2), cli_args
        assert snapshot(in_repo) == before
        expected.append(result.err.strip().removeprefix("error: "))

    async def session() -> list[str]:
        texts = []
        async with Client(_params(in_repo)) as client:
            for tool, args, _cli in BAD:
                error, text = await _call(client, tool, args)
                assert error, (tool, args)
                texts.append(text)
        return texts

    before = snapshot(in_repo)
    texts = _run(session())
    assert snapshot(in_repo) == before
    for text, message in zip(texts, expected, strict=True):
        assert text.endswith(message), (text, message)
        assert "\n" not in text


def test_two_clients_racing_for_one_task_get_one_winner(cli: Cli, in_repo: Path) -> None:
    for round_no in range(3):
        cli("task", "add", "Contested", "--id", f"c{round_no}")

        async def race(task_id: str = f"c{round_no}") -> list[bool]:
            async with Client(_params(in_repo)) as a, Client(_params(in_repo)) as b:
                outcomes = await asyncio.gather(
                    _call(a, "claim", {"agent": "left", "task_id": task_id}),
                    _call(b, "claim", {"agent": "right", "task_id": task_id}),
                )
                return [not error for error, _ in outcomes]

        assert sorted(_run(race())) == [False, True]


@pytest.mark.slow
def test_the_server_keeps_a_claim_alive_and_a_vanished_client_loses_it(
    cli: Cli, in_repo: Path
) -> None:
    _fast_leases(in_repo)
    cli("task", "add", "Long", "--id", "long")
    env = open_environment(in_repo, None, {})

    async def hold_then_vanish() -> None:
        async with Client(_params(in_repo)) as client:
            error, _ = await _call(client, "claim", {"agent": "holder"})
            assert not error
            await asyncio.sleep(2.5)  # past the session lease: the server's heartbeats keep it
            assert sweep(env.store, env.config, time.time()).actions == []
        # The client (and its server) are gone without a word.

    _run(hold_then_vanish())
    assert env.store.get("long").state == "active"
    time.sleep(2.0)
    (action,) = sweep(env.store, env.config, time.time()).actions
    assert (action.kind, action.target, action.to_state) == ("reclaimed", "long", "pending")


SESSION = """
import asyncio, sys
from pathlib import Path
from mcp import Client
from mcp.client.stdio import StdioServerParameters

async def main(exe, root, agent):
    async with Client(StdioServerParameters(command=exe, args=["mcp"], cwd=root)) as client:
        while True:
            result = await client.call_tool("claim", {"agent": agent})
            if result.is_error:
                return
            task = result.structured_content
            Path(task["worktree"], task["id"] + ".txt").write_text(task["id"] + "\\n")
            done = await client.call_tool("complete", {"agent": agent, "task_id": task["id"]})
            outcome = "error" if done.is_error else done.structured_content["outcome"]
            print(task["id"], outcome, flush=True)

asyncio.run(main(*sys.argv[1:4]))
"""


@pytest.mark.slow
def test_two_mcp_sessions_finish_a_pool_with_every_result_once(in_repo: Path) -> None:
    count = 16
    (in_repo / "batch.yaml").write_text(
        "".join(f"- {{id: m{n:02d}, title: MCP task {n}}}\n" for n in range(count))
    )
    subprocess.run([str(STIGMERGY), "task", "import", "batch.yaml"], cwd=in_repo, check=True)
    (in_repo / "batch.yaml").unlink()
    sessions = [
        subprocess.Popen(
            [sys.executable, "-c", SESSION, str(STIGMERGY), str(in_repo), name],
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("claude-mcp", "codex-mcp")
    ]
    reports = [s.communicate(timeout=300)[0].split("\n") for s in sessions]
    done = [line.split() for report in reports for line in report if line]
    assert sorted(task for task, _ in done) == [f"m{n:02d}" for n in range(count)]
    assert {outcome for _, outcome in done} == {"merged"}
    trailers = git(
        in_repo, "log", "--format=%(trailers:key=Stigmergy-Task,valueonly)", "main"
    ).split()
    assert sorted(trailers) == [f"m{n:02d}" for n in range(count)]


def test_onboarding_prints_and_writes_idempotently(cli: Cli, in_repo: Path) -> None:
    printed = cli("onboard", "--agent", "claude")
    assert "stigmergy task claim --agent NAME" in printed.out
    assert "claude mcp add stigmergy -- stigmergy mcp" in printed.out
    assert "[mcp_servers.stigmergy]" in cli("onboard", "--agent", "codex").out
    (in_repo / "AGENTS.md").write_text("# Our rules\n\nUse tabs.\n")
    assert "Updated" in cli("onboard", "--agent", "codex", "--write").out
    once = (in_repo / "AGENTS.md").read_text()
    assert once.startswith("# Our rules\n\nUse tabs.\n")
    assert "Already up to date" in cli("onboard", "--agent", "codex", "--write").out
    assert (in_repo / "AGENTS.md").read_text() == once
    (in_repo / "AGENTS.md").write_text(once + "\nMore of our rules.\n")
    cli("onboard", "--agent", "generic", "--write")
    again = (in_repo / "AGENTS.md").read_text()
    assert again.count("stigmergy:begin") == 1
    assert again.endswith("More of our rules.\n")
    cli("onboard", "--agent", "claude", "--write")
    assert "stigmergy:begin" in (in_repo / "CLAUDE.md").read_text()
    bad = cli("onboard", "--agent", "gpt")
    assert bad.code == 2
    assert "unknown agent 'gpt'" in bad.err


def test_status_over_mcp_is_the_cli_status(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "A", "--id", "a")

    async def session() -> Any:
        async with Client(_params(in_repo)) as client:
            return (await _call(client, "status", {}))[1]

    over_mcp = _run(session())
    over_cli = json.loads(cli("status", "--json").out)
    assert over_mcp["tasks"] == over_cli["tasks"]
    assert [t["id"] for t in over_mcp["ready"]] == [t["id"] for t in over_cli["ready"]]


def test_without_the_mcp_extra_the_command_says_which_to_install(in_repo: Path) -> None:
    script = (
        "import sys; sys.modules['mcp'] = None; sys.modules['mcp.server'] = None\n"
        "from stigmergy_cli.cli import main\n"
        "sys.exit(main(['mcp']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=in_repo, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert (
        proc.stderr
        == "error: the MCP server needs the mcp package: pip install 'stigmergy-cli[mcp]'\n"
    )
