"""The local backend as an idle agent sees it: when to look at the pool again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from stigmergy_cli import claims, tasks
from stigmergy_cli.backends import LocalBackend
from stigmergy_cli.claims import NothingClaimable
from stigmergy_cli.environment import Environment, open_environment
from stigmergy_cli.oslock import FileLock

NOW = 1_800_000_000.0


def _env(root: Path) -> Environment:
    return open_environment(root, None, {}, NOW)


def _add(env: Environment, task_id: str, *deps: str) -> None:
    task = tasks.new_task(
        {"id": task_id, "title": task_id, "depends_on": list(deps)}, now=NOW, created_by="test"
    )
    env.store.add(task, NOW)


def _claim(backend: LocalBackend, agent: str) -> claims.Claimed:
    return backend.claim(agent, None, NOW, lambda _task: True, None)


def _finish(env: Environment, held: claims.Claimed) -> None:
    claims.complete(env.store, env.config, "one", held.task.id, token=held.token, now=NOW)
    held.claim.close()


def test_a_task_finishing_wakes_an_idle_agent_only_if_a_pending_task_waits_for_one(
    env_root: Path,
) -> None:
    env = _env(env_root)
    busy, idle = LocalBackend(env), LocalBackend(env)
    try:
        _add(env, "a")
        held = _claim(busy, "one")
        with pytest.raises(NothingClaimable) as nothing:
            _claim(idle, "two")
        assert nothing.value.waiting is False  # nothing is pending at all
        before = idle.signature()
        _finish(env, held)
        assert idle.signature() == before  # done/ changed, but nothing can have become ready

        _add(env, "c")
        _add(env, "b", "c")
        held = _claim(busy, "one")
        assert held.task.id == "c"
        with pytest.raises(NothingClaimable) as nothing:
            _claim(idle, "two")
        assert nothing.value.waiting is True  # b waits for c
        before = idle.signature()
        _finish(env, held)
        assert idle.signature() != before
        assert _claim(idle, "two").task.id == "b"
    finally:
        busy.shutdown()
        idle.shutdown()


def test_an_idle_agent_woken_by_an_import_looks_once_that_part_is_published(
    env_root: Path,
) -> None:
    env = _env(env_root)
    backend = LocalBackend(env)
    publishing = FileLock(env.layout.publish_gate)
    publishing.acquire()
    returned: list[bool] = []
    try:
        first = env.layout.task_file("pending", "x")
        first.write_text("schema: 1\nid: x\ntitle: x\n")  # an import's first link
        waiter = threading.Thread(
            target=lambda: returned.append(backend.wait(10, threading.Event()))
        )
        waiter.start()
        time.sleep(0.3)
        assert waiter.is_alive()  # woken by the file, but waiting for the publisher
        assert returned == []
    finally:
        publishing.release()
    waiter.join(10)
    backend.shutdown()
    assert returned == [True]
