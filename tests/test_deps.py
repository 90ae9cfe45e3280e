from __future__ import annotations

import pytest

from stigmergy_cli.deps import Known, blocked_reason, check_acyclic
from stigmergy_cli.errors import Conflict
from stigmergy_cli.tasks import Task


def _t(task_id: str, *deps: str) -> Task:
    return Task(id=task_id, title=task_id, depends_on=deps)


def test_a_new_task_closing_a_cycle_through_existing_ones_is_refused() -> None:
    # b depends on a (which does not exist yet, as after a hand edit); adding a -> b closes it.
    existing = {"b": _t("b", "a"), "c": _t("c", "b")}
    with pytest.raises(Conflict, match="dependency cycle: a -> c -> b -> a"):
        check_acyclic({"a": _t("a", "c")}, existing.get)


def test_cycles_inside_a_batch_are_refused_and_dags_accepted() -> None:
    with pytest.raises(Conflict, match="cycle"):
        check_acyclic({"x": _t("x", "y"), "y": _t("y", "x")}, lambda _id: None)
    diamond = {"a": _t("a"), "b": _t("b", "a"), "c": _t("c", "a"), "d": _t("d", "b", "c")}
    check_acyclic(diamond, lambda _id: None)


def test_a_long_chain_is_checked_without_recursion_limits() -> None:
    chain = {f"t{i}": _t(f"t{i}", f"t{i - 1}") if i else _t("t0") for i in range(5000)}
    check_acyclic(chain, lambda _id: None)


def test_blocked_reason_names_each_unfinished_dependency() -> None:
    task = _t("x", "a", "b", "c", "d")
    known = {
        "a": Known("done", merged=True),
        "b": Known("active", merged=False),
        "c": Known("done", merged=False),
    }
    assert (
        blocked_reason(task, known) == "waits for b (active), c (done, not merged yet), d (unknown)"
    )
    assert blocked_reason(_t("y", "a"), known) is None
