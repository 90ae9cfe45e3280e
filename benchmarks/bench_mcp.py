"""MCP tool-call latency through the real mcp client (bar: under 50 ms in-process).

In-process: the mcp package's Client connected to the server object in memory (no stdio),
so the figure is the server's own work plus the protocol. Also over stdio, as an agent runs it.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mcp import Client
from mcp.client.stdio import StdioServerParameters

from stigmergy_cli.environment import initialize

BAR_MS = 50.0


def _repo(root: Path, tasks: int) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    (root / "README.md").write_text("bench\n")
    subprocess.run(["git", "add", "."], cwd=root, check=True)
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "i"],
        cwd=root,
        check=True,
    )
    subprocess.run(["git", "config", "user.name", "bench"], cwd=root, check=True)
    subprocess.run(["git", "config", "user.email", "bench@example.com"], cwd=root, check=True)
    initialize(root, None, {})
    batch = "".join(f"- {{id: t{n:04d}, title: Task {n}}}\n" for n in range(tasks))
    (root / "batch.yaml").write_text(batch)
    subprocess.run(
        [str(Path(sys.executable).parent / "stigmergy"), "task", "import", "batch.yaml"],
        cwd=root,
        check=True,
    )
    (root / "batch.yaml").unlink()


async def _measure(client: Client, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"claim": [], "complete (empty change)": [], "status": []}
    for n in range(rounds):
        agent = f"bench-{n % 3}"
        started = time.perf_counter()
        claimed = await client.call_tool("claim", {"agent": agent})
        times["claim"].append((time.perf_counter() - started) * 1000)
        task = claimed.structured_content or {}
        started = time.perf_counter()
        done = await client.call_tool("complete", {"agent": agent, "task_id": task["id"]})
        times["complete (empty change)"].append((time.perf_counter() - started) * 1000)
        assert not done.is_error, done.content
        started = time.perf_counter()
        await client.call_tool("status", {})
        times["status"].append((time.perf_counter() - started) * 1000)
    return times


def _report(label: str, times: dict[str, list[float]]) -> None:
    for tool, values in times.items():
        median = statistics.median(values)
        p90 = sorted(values)[int(len(values) * 0.9) - 1]
        print(
            f"{label} {tool:<24} median {median:6.1f} ms, p90 {p90:6.1f} ms "
            f"(bar {BAR_MS:g} ms: {median / BAR_MS:.2f}x of bar)"
        )


def main() -> None:
    quick = "--quick" in sys.argv
    rounds = 10 if quick else 40
    print("== MCP tool calls through the mcp package's client")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        _repo(root, rounds * 2 + 10)
        os.chdir(root)
        from stigmergy_cli import mcp_server

        server = mcp_server.build(str(root))

        async def in_process() -> dict[str, list[float]]:
            async with Client(server) as client:
                await _measure(client, 2)  # warm-up: worktrees created, modules imported
                return await _measure(client, rounds)

        _report("in-process", asyncio.run(in_process()))

        async def over_stdio() -> dict[str, list[float]]:
            params = StdioServerParameters(
                command=str(Path(sys.executable).parent / "stigmergy"), args=["mcp"], cwd=str(root)
            )
            async with Client(params) as client:
                await _measure(client, 2)
                return await _measure(client, rounds)

        _report("stdio     ", asyncio.run(over_stdio()))
    print(
        "   a claim prepares the agent's worktree (git reset + clean); complete verifies, commits"
    )
    print("   nothing (empty change) and integrates under the integration lock.")


if __name__ == "__main__":
    main()
