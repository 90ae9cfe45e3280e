"""Many real processes racing for the same claims, round after round."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from stigmergy_cli import claims, tasks
from stigmergy_cli.claims import NothingClaimable
from stigmergy_cli.config import Config
from stigmergy_cli.paths import Layout
from stigmergy_cli.store import TaskStore

RACERS = 32
ROUNDS = 300


def _racer(root: str, agent: str, rounds: int, barrier: Barrier, results: Any) -> None:
    store = TaskStore(Layout(Path(root)))
    cfg = Config()
    for round_no in range(rounds):
        barrier.wait(timeout=60)
        try:
            claimed = claims.claim_best(store, cfg, agent, role=None, now=time.time())
        except NothingClaimable:
            results.put((round_no, agent, None))
        else:
            claimed.claim.close()
            results.put((round_no, agent, claimed.record.task.id))


@pytest.mark.slow
def test_exactly_one_winner_in_every_round(env_root: Path) -> None:
    store = TaskStore(Layout(env_root))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(RACERS + 1)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_racer, args=(str(env_root), f"agent{n}", ROUNDS, barrier, results))
        for n in range(RACERS)
    ]
    for proc in procs:
        proc.start()
    try:
        for round_no in range(ROUNDS):
            task = tasks.new_task(
                {"id": f"round-{round_no}", "title": "contested"}, now=time.time(), created_by="t"
            )
            store.add(task, time.time())
            barrier.wait(timeout=60)
            outcomes = [results.get(timeout=60) for _ in range(RACERS)]
            assert {o[0] for o in outcomes} == {round_no}
            winners = [o[1] for o in outcomes if o[2] is not None]
            assert len(winners) == 1, f"round {round_no}: winners {winners}"
            assert store.get(f"round-{round_no}").state == "active"
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    assert all(proc.exitcode == 0 for proc in procs)
    assert not [p for p in store.layout.locks.iterdir() if p.name.startswith(".stage-")]
