from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from stigmergy_cli import claims, config, events, heartbeats, locks, signals, tasks
from stigmergy_cli.claims import NothingClaimable
from stigmergy_cli.config import Config
from stigmergy_cli.heartbeats import Heartbeat
from stigmergy_cli.locks import NotOwner
from stigmergy_cli.paths import Layout
from stigmergy_cli.store import TaskStore
from stigmergy_cli.tasks import Task

from .conftest import snapshot

NOW = 1_800_000_000.0
CFG = Config()


def _add(store: TaskStore, task_id: str, *deps: str, **fields: object) -> Task:
    task = tasks.new_task(
        {"id": task_id, "title": f"Task {task_id}", "depends_on": list(deps), **fields},
        now=NOW,
        created_by="test",
    )
    store.add(task, NOW)
    return task


@pytest.fixture
def store(env_root: Path) -> TaskStore:
    return TaskStore(Layout(env_root))


def _ids_by_claiming(store: TaskStore, n: int, **kwargs: object) -> list[str]:
    won = []
    for i in range(n):
        claimed = claims.claim_best(store, CFG, f"agent{i}", now=NOW, **kwargs)  # type: ignore[arg-type]
        claimed.claim.close()
        won.append(claimed.record.task.id)
    return won


def test_claims_go_best_score_first_and_move_the_task(store: TaskStore) -> None:
    _add(store, "low", priority=10)
    _add(store, "high", priority=90)
    _add(store, "mid", priority=50)
    assert _ids_by_claiming(store, 3, role=None) == ["high", "mid", "low"]
    assert store.get("high").state == "active"
    assert [i.task_id for i in locks.list_locks(store.layout)] == ["high", "low", "mid"]
    assert [e["event"] for e in events.read(store.layout.events)][-3:] == ["claimed"] * 3


def _idle(store: TaskStore, agents: list[str], role: str | None = None, *, at: float = NOW) -> None:
    for agent in agents:
        heartbeats.write(store.layout, Heartbeat.new(agent, role=role, now=at))


def test_agents_woken_together_share_out_the_best_tasks_between_them(store: TaskStore) -> None:
    for n in range(40):
        _add(store, f"t{n:02d}", priority=99 - n)
    agents = [f"agent{i}" for i in range(8)]
    _idle(store, agents)
    _idle(store, ["writer"], role="writer")  # another role: not a rival
    _idle(store, ["gone"], at=NOW - 2 * CFG.lease)  # its heartbeat is stale: not a rival
    (store.layout.agents / "torn.json").write_text('{"status": "idle", "la')  # not a rival
    (store.layout.agents / "odd.json").write_text("[]")
    assert heartbeats.count_idle(store.layout, None, NOW, CFG.lease) == 8
    # One after another, each saying so in its heartbeat as an agent does: the eight best go
    # to the eight agents, in no fixed order.
    won = []
    for agent in agents:
        claimed = claims.claim_best(store, CFG, agent, role=None, now=NOW, after_idle=True)
        claimed.claim.close()
        won.append(claimed.record.task.id)
        heartbeats.write(
            store.layout, replace(Heartbeat.new(agent, role=None, now=NOW), status="working")
        )
    assert sorted(won) == [f"t{n:02d}" for n in range(8)]
    assert won != sorted(won)
    # An agent alone takes the best.
    _idle(store, ["late"])
    claimed = claims.claim_best(store, CFG, "late", role=None, now=NOW, after_idle=True)
    assert claimed.record.task.id == "t08"


def test_roles_dependencies_and_executability_are_respected(store: TaskStore) -> None:
    _add(store, "docs", role="writer", priority=90)
    _add(store, "base")
    _add(store, "after", "base", priority=95)
    _add(store, "scripted", command="make", priority=80)
    with pytest.raises(NothingClaimable) as info:
        claims.claim_best(store, CFG, "a", role=None, now=NOW, can_take=lambda t: False)
    assert "4 pending (1 other role, 3 not executable)" in str(info.value)
    claimed = claims.claim_best(
        store, CFG, "a", role=None, now=NOW, can_take=lambda t: t.command is None
    )
    assert claimed.record.task.id == "base"
    writer = claims.claim_best(store, CFG, "w", role="writer", now=NOW)
    assert writer.record.task.id == "docs"


def test_a_dependency_done_but_not_merged_still_blocks(store: TaskStore) -> None:
    _add(store, "base")
    _add(store, "after", "base")
    record = store.get("base")
    store.write(record, record.task.evolve(result={"merged": False}), "done")
    with pytest.raises(NothingClaimable, match="1 blocked"):
        claims.claim_best(store, CFG, "a", role=None, now=NOW)
    record = store.get("base")
    store.write(record, record.task.evolve(result={"merged": True}))
    assert claims.claim_best(store, CFG, "a", role=None, now=NOW).record.task.id == "after"


def test_claiming_a_named_task_says_why_it_cannot(store: TaskStore) -> None:
    _add(store, "base")
    _add(store, "after", "base")
    _add(store, "docs", role="writer")
    with pytest.raises(NothingClaimable, match="'after' waits for base"):
        claims.claim_named(store, CFG, "a", "after", role=None, now=NOW)
    with pytest.raises(NothingClaimable, match="for role 'writer'"):
        claims.claim_named(store, CFG, "a", "docs", role=None, now=NOW)
    claims.claim_named(store, CFG, "a", "base", role=None, now=NOW).claim.close()
    with pytest.raises(NothingClaimable, match="'base' is active by agent 'a', not pending"):
        claims.claim_named(store, CFG, "b", "base", role=None, now=NOW)
    for task_id in ("after", "docs"):
        record = store.get(task_id)
        store.write(record, record.task, "cancelled")
    with pytest.raises(NothingClaimable, match="no pending tasks"):
        claims.claim_best(store, CFG, "a", role=None, now=NOW)


def test_release_counts_a_skip_and_raises_pressure(store: TaskStore) -> None:
    _add(store, "t")
    claimed = claims.claim_best(store, CFG, "alpha", role=None, now=NOW, session=True)
    claimed.claim.close()
    record = claims.release(store, CFG, "alpha", "t", token=claimed.token, now=NOW + 10)
    assert (record.state, record.task.skip_count, record.task.attempts) == ("pending", 1, 0)
    field = signals.Field(store.layout, CFG.pressure)
    assert field.read(["task:t"], NOW + 10) == pytest.approx(CFG.pressure.signal_skip)
    assert locks.inspect(store.layout, "t") is None


def test_failures_count_attempts_until_the_task_fails_for_good(store: TaskStore) -> None:
    _add(store, "t", max_attempts=2)
    for expected in ("pending", "failed"):
        claimed = claims.claim_best(store, CFG, "alpha", role=None, now=NOW)
        record = claims.fail(store, CFG, "alpha", "t", token=claimed.token, reason="red", now=NOW)
        claimed.claim.close()
        assert record.state == expected
    assert record.task.attempts == 2
    assert record.task.result == {
        "outcome": "failed",
        "agent": "alpha",
        "reason": "red",
        "finished_at": NOW,
    }


def test_only_the_holder_with_its_token_may_give_a_task_back(store: TaskStore) -> None:
    _add(store, "t")
    claimed = claims.claim_best(store, CFG, "alpha", role=None, now=NOW)
    before = snapshot(store.layout.root)
    with pytest.raises(NotOwner, match="claimed by agent 'alpha', not 'beta'"):
        claims.release(store, CFG, "beta", "t", token=None, now=NOW)
    with pytest.raises(NotOwner, match="does not hold a claim"):
        claims.fail(store, CFG, "alpha", "t", token="1.wrong", reason=None, now=NOW)
    with pytest.raises(NotOwner, match="does not hold a claim"):
        claims.release(store, CFG, "alpha", "unclaimed", token=None, now=NOW)
    assert snapshot(store.layout.root) == before
    claimed.claim.close()


def test_the_token_names_the_attempt(store: TaskStore) -> None:
    _add(store, "t")
    first = claims.claim_best(store, CFG, "alpha", role=None, now=NOW)
    claims.fail(store, CFG, "alpha", "t", token=first.token, reason=None, now=NOW)
    second = claims.claim_best(store, CFG, "alpha", role=None, now=NOW)
    assert first.token.startswith("1.")
    assert second.token.startswith("2.")
    first.claim.close()
    second.claim.close()


def test_session_claims_use_the_session_lease(store: TaskStore) -> None:
    cfg = config.parse({"agent": {"session_lease": 900}}, "c")
    _add(store, "t")
    claimed = claims.claim_best(store, cfg, "alpha", role=None, now=time.time(), session=True)
    claimed.claim.close()
    info = locks.inspect(store.layout, "t")
    assert info is not None
    assert info.owner is not None
    assert (info.owner.liveness, info.owner.lease) == ("session", 900)
