"""`stigmergy mcp`: the pool as Model Context Protocol tools, over stdio.

For interactive agents (a Claude Code or Codex session) that take work themselves. Every tool
call goes through the same functions as the CLI (sessions.py), so claims, fencing and
heartbeats are the same, and a refusal is a tool error carrying the CLI's one-line message.
While the session holds claims, the server refreshes the agent's heartbeat; when the client
goes away it releases nothing: the claim stays until the sweep finds it stale, exactly as it
would for an agent whose process died.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from stigmergy_cli import pool, sessions, tasks
from stigmergy_cli.environment import Environment, open_environment, require_local
from stigmergy_cli.errors import StigmergyError

try:
    from mcp.server import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # pragma: no cover - exercised by the CLI's missing-extra message
    MCPServer = None  # type: ignore[assignment,misc]
    ToolError = None  # type: ignore[assignment,misc]

T = TypeVar("T")
MISSING = "the MCP server needs the mcp package: pip install 'stigmergy-cli[mcp]'"


class _Keepalive:
    """Refresh the heartbeats of agents that claimed through this server, in the background."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.agents: set[str] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="mcp-heartbeats", daemon=True)
        self._thread.start()

    def add(self, agent: str) -> None:
        with self._lock:
            self.agents.add(agent)

    def _run(self) -> None:
        while True:
            time.sleep(self.env.config.heartbeat_interval)
            with self._lock:
                agents = list(self.agents)
            for agent in agents:
                try:
                    beat = sessions.heartbeat(self.env, agent, time.time())
                except (StigmergyError, OSError):
                    continue
                if beat.task is None:  # nothing held any more: stop speaking for it
                    with self._lock:
                        self.agents.discard(agent)


def build(root: str | None = None) -> Any:
    """The MCP server for the environment at `root` (or the working directory's)."""
    if MCPServer is None:
        raise StigmergyError(MISSING)
    env = open_environment(
        Path.cwd(), root or os.environ.get("STIGMERGY_ROOT"), os.environ, time.time()
    )
    require_local(env, "`stigmergy mcp`")  # its listing tools read the local pool
    keepalive = _Keepalive(env)
    server = MCPServer(
        "stigmergy",
        log_level="WARNING",  # stderr is the user's terminal; refusals are tool results
        instructions=(
            "Take work from the shared pool: claim a task, work only in the worktree it gives "
            "you, then complete it (stigmergy verifies and merges) or release/fail it. Never "
            "merge, push or delete worktrees yourself."
        ),
    )

    def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except StigmergyError as exc:
            raise ToolError(str(exc)) from None

    @server.tool()
    def list_ready(role: str | None = None) -> list[dict[str, Any]]:
        """Tasks an agent could claim now, best score first."""

        def ready() -> list[dict[str, Any]]:
            now = time.time()
            scan = env.store.scan(now, states=("pending", "done"))
            entries = pool.build(
                scan.records, now, env.config.pressure, pool.field_pressures(env, now)
            )
            return [
                pool.entry_json(e)
                for e in entries
                if e.ready and (role is None or e.record.task.role in (None, role))
            ]

        return call(ready)

    @server.tool()
    def show_task(task_id: str) -> dict[str, Any]:
        """Every field of one task, with its status, score and what it waits for."""
        return call(
            lambda: pool.task_json(env, env.store.get(tasks.validate_id(task_id)), time.time())
        )

    @server.tool()
    def add_task(
        title: str,
        task_id: str | None = None,
        description: str | None = None,
        priority: str = "medium",
        depends_on: list[str] | None = None,
        role: str | None = None,
        verify: str | None = None,
        urgent: bool = False,
        agent: str | None = None,
    ) -> dict[str, Any]:
        """Add a pending task (priority 0-100 or low/medium/high/urgent)."""

        def add() -> dict[str, Any]:
            now = time.time()
            doc = {
                "id": task_id,
                "title": title,
                "description": description,
                "priority": tasks.parse_priority(priority),
                "depends_on": depends_on or [],
                "role": role,
                "verify": verify,
            }
            record = sessions.add(env, doc, urgent=urgent, by=agent or "mcp", now=now)
            return pool.task_json(env, record, now)

        return call(add)

    @server.tool()
    def claim(agent: str, task_id: str | None = None, role: str | None = None) -> dict[str, Any]:
        """Claim the best ready task (or task_id) for `agent`; returns it, its token and the
        worktree to work in. Keeps the agent's heartbeat alive while this session lasts."""
        claimed: dict[str, Any] = call(
            sessions.claim, env, agent, task_id, role=role, now=time.time()
        )
        keepalive.add(str(claimed["agent"]))
        return claimed

    @server.tool()
    def heartbeat(agent: str) -> dict[str, Any]:
        """Say the agent is still at work (the server also does this while it holds claims)."""
        beat = call(sessions.heartbeat, env, agent, time.time())
        return {"agent": beat.agent, "task": beat.task, "last_seen": beat.last_seen}

    @server.tool()
    def complete(agent: str, task_id: str, token: str | None = None) -> dict[str, Any]:
        """Verify and merge the work in the agent's worktree; the task is then done."""
        outcome = call(sessions.done, env, agent, task_id, token=token, now=time.time())
        return {
            "task": task_id,
            "outcome": outcome.kind,
            "merged": outcome.merged,
            "merge_commit": outcome.merge_commit,
            "conflict_task": outcome.conflict_task,
            "files": list(outcome.files),
            "detail": outcome.detail or None,
        }

    @server.tool()
    def fail(
        agent: str, task_id: str, reason: str | None = None, token: str | None = None
    ) -> dict[str, Any]:
        """Record a failed attempt: back to pending, or failed at its limit."""
        record = call(
            sessions.fail, env, agent, task_id, token=token, reason=reason, now=time.time()
        )
        return {"task": task_id, "status": record.state, "attempts": record.task.attempts}

    @server.tool()
    def release(agent: str, task_id: str, token: str | None = None) -> dict[str, Any]:
        """Give a claimed task back unfinished."""
        record = call(sessions.release, env, agent, task_id, token=token, now=time.time())
        return {"task": task_id, "status": record.state, "skip_count": record.task.skip_count}

    @server.tool()
    def deposit_signal(
        kind: str,
        intensity: float = 0.5,
        task_id: str | None = None,
        target_agent: str | None = None,
        role: str | None = None,
        agent: str | None = None,
    ) -> dict[str, Any]:
        """Deposit a signal (-1.0 to 1.0) on one task, agent or role."""
        signal = call(
            sessions.deposit,
            env,
            kind,
            task=task_id,
            agent=target_agent,
            role=role,
            intensity=intensity,
            meta={},
            by=agent,
            now=time.time(),
        )
        return {
            "id": signal.id,
            "kind": signal.kind,
            "target": signal.target,
            "intensity": signal.intensity,
        }

    @server.tool()
    def status() -> dict[str, Any]:
        """Agents, tasks by state, the ready queue, the pressure map and recent events."""
        from stigmergy_cli import snapshot

        return call(lambda: snapshot.take(env.layout, env.store, env.config, time.time()).to_json())

    return server
