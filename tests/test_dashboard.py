"""status, watch and log: what a person looks for, rendered at a fixed size."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from stigmergy_cli import claims, events, snapshot
from stigmergy_cli.agent_loop import Agent, AgentOptions
from stigmergy_cli.cli import render
from stigmergy_cli.environment import open_environment

from .conftest import Cli

STIGMERGY = Path(sys.executable).parent / "stigmergy"


def _render(root: Path) -> str:
    env = open_environment(root, None, {})
    snap = snapshot.take(env.layout, env.store, env.config, time.time())
    out = Console(width=100, record=True, color_system=None, force_terminal=False)
    out.print(render.dashboard(snap))
    return out.export_text()


def test_the_dashboard_shows_agents_tasks_and_counts(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "Write the parser", "--id", "parser", "--priority", "high")
    cli("task", "add", "Document the parser", "--id", "docs", "--dep", "parser")
    cli("task", "add", "Fix the flaky test", "--id", "flaky", "--urgent")
    cli("task", "add", "Done already", "--id", "old")
    env = open_environment(in_repo, None, {})
    Agent(env, AgentOptions("finisher", command="touch fixed", once=True)).run()  # "flaky"
    claimed = claims.claim_best(
        env.store, env.config, "alpha", role=None, now=time.time(), session=True
    )
    cli("agent", "heartbeat", "--id", "alpha")
    text = _render(in_repo)
    assert "4 tasks: 2 pending, 1 active, 1 done" in text
    assert "alpha" in text
    assert "alive" in text
    assert f"{claimed.record.task.id}: {claimed.record.task.title}" in text
    assert "finisher" in text
    assert "gone" in text
    assert "1 claimed" in text
    assert "1 merged" in text
    assert "Done already" in text or "Write the parser" in text  # the ready queue
    assert "merged" in text  # recent events
    claimed.claim.close()


def test_status_json_is_one_document(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "A", "--id", "a")
    cli("task", "boost", "a")
    doc = json.loads(cli("status", "--json").out)
    assert doc["tasks"]["pending"] == 1
    assert doc["ready"][0]["id"] == "a"
    assert doc["pressure"][0]["id"] == "a"
    assert doc["recent_events"][-1]["event"] == "boosted"
    assert cli("status").code == 0


def test_log_filters_by_task_and_prints_json(cli: Cli, in_repo: Path) -> None:
    assert cli("log").out == "No events yet.\n"
    cli("task", "add", "A", "--id", "a")
    cli("task", "add", "B", "--id", "b")
    cli("task", "cancel", "b")
    assert [e["task"] for e in json.loads(cli("log", "--json").out)] == ["a", "b", "b"]
    lines = cli("log", "--task", "b").out.splitlines()
    assert len(lines) == 2
    assert "cancelled" in lines[1]


def test_watch_and_log_follow_stop_cleanly_on_ctrl_c(cli: Cli, in_repo: Path) -> None:
    cli("task", "add", "A", "--id", "a")
    watch = subprocess.Popen(
        [str(STIGMERGY), "watch", "--interval", "0.2"],
        cwd=in_repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    follow = subprocess.Popen(
        [str(STIGMERGY), "log", "--follow", "--json"],
        cwd=in_repo,
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    events.append(in_repo / ".stigmergy" / "events.jsonl", "boosted", time.time(), task="a")
    assert follow.stdout is not None
    seen = [json.loads(follow.stdout.readline()) for _ in range(2)]
    assert [e["event"] for e in seen] == ["task_added", "boosted"]
    for proc in (watch, follow):
        proc.send_signal(signal.SIGINT)
    watch_out, _ = watch.communicate(timeout=10)
    follow.communicate(timeout=10)
    assert watch.returncode == 0
    assert follow.returncode == 0
    assert "stigmergy" in watch_out
    assert "Traceback" not in watch_out
