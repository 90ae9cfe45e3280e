from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stigmergy_cli import tasks, yamlio
from stigmergy_cli.errors import InvalidInput
from stigmergy_cli.tasks import Task

VALID_IDS = ["a", "0", "fix-login", "v1.2_rc-3", "a" * 64, "jwt.auth", "x-1e1f59"]
INVALID_IDS = [
    ("", "is empty"),
    ("../x", "must start with"),
    ("a/b", "may contain only"),
    ("a..b", "'..'"),
    ("-rf", "must start with"),
    ("--upload-pack=evil", "must start with"),
    (".hidden", "must start with"),
    ("_x", "must start with"),
    ("has space", "whitespace"),
    ("new\nline", "whitespace"),
    ("tab\there", "whitespace"),
    ("nul\x00", "control"),
    ("UPPER", "may contain only"),
    ("a" * 65, "65 characters"),
    ("a" * 300, "300 characters"),
    ("ends.", "end with '.'"),
    ("x.lock", ".lock"),
    ("caf\u00e9", "may contain only"),
    ("a:b", "may contain only"),
]


@pytest.mark.parametrize("task_id", VALID_IDS)
def test_valid_ids_are_accepted(task_id: str) -> None:
    assert tasks.validate_id(task_id) == task_id


@pytest.mark.parametrize(("task_id", "why"), INVALID_IDS)
def test_invalid_ids_are_refused_with_a_reason(task_id: str, why: str) -> None:
    with pytest.raises(InvalidInput, match="invalid task id") as info:
        tasks.validate_id(task_id)
    assert why in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", [None, 3, ["a"], b"abc"])
def test_non_string_ids_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput):
        tasks.validate_id(value)


@given(st.text(max_size=80))
def test_validate_id_accepts_exactly_the_safe_ids(text: str) -> None:
    safe = set(string.ascii_lowercase + string.digits + "._-")
    expected = (
        0 < len(text) <= 64
        and set(text) <= safe
        and text[0] in string.ascii_lowercase + string.digits
        and ".." not in text
        and not text.endswith((".", ".lock"))
    )
    try:
        tasks.validate_id(text)
    except InvalidInput as exc:
        assert not expected, exc
        assert "\n" not in str(exc)
    else:
        assert expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("low", 20), ("medium", 50), ("HIGH", 80), ("urgent", 95), (0, 0), (100, 100), ("42", 42)],
)
def test_priorities(value: object, expected: int) -> None:
    assert tasks.parse_priority(value) == expected


@pytest.mark.parametrize("value", [-1, 101, "101", "-5", "hihg", "", 50.5, True, None, [50]])
def test_bad_priorities_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="priority"):
        tasks.parse_priority(value)


@given(st.text(max_size=300))
def test_generated_ids_are_always_valid(title: str) -> None:
    assert tasks.validate_id(tasks.generate_id(title))


def test_generated_id_is_slug_plus_hash() -> None:
    task_id = tasks.generate_id("Implement JWT auth!", salt="fixed")
    assert task_id.startswith("implement-jwt-auth-")
    assert len(task_id) == len("implement-jwt-auth-") + 6
    assert tasks.generate_id("Implement JWT auth!", salt="fixed") == task_id
    assert tasks.generate_id("\u00fc\u00fc\u00fc").startswith("task-")


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"title": ""}, "title must not be empty"),
    ({"title": None}, "title is required"),
    ({"title": "two\nlines"}, "newlines"),
    ({"title": "x" * 201}, "at most 200"),
    ({"priority": 150}, "priority"),
    ({"depends_on": "../up"}, "dependency id"),
    ({"depends_on": ["t1"], "id": "t1"}, "depend on itself"),
    ({"depends_on": {"a": 1}}, "must be a list"),
    ({"labels": ["has space"]}, "invalid label"),
    ({"role": "a/b"}, "invalid role"),
    ({"inputs": ["/etc/passwd"]}, "relative path"),
    ({"outputs": ["../outside"]}, "relative path"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": 0}, "greater than 0"),
    ({"timeout": "soon"}, "timeout"),
    ({"timeout": float("nan")}, "timeout must be a finite number"),
    ({"timeout": float("inf")}, "timeout must be a finite number"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"attempts": -1}, "attempts"),
    ({"attempts": True}, "attempts"),
    ({"created_at": "yesterday"}, "ISO 8601"),
    ({"result": "ok"}, "result must be a mapping"),
    ({"schema": 99}, "newer"),
    ({"command": "a\x00b"}, "control"),
    ({"type": "no spaces please"}, "invalid type"),
    ({"depends_on": [f"d{i}" for i in range(300)]}, "at most 256"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_FIELDS)
def test_bad_fields_are_named(changes: dict[str, Any], message: str) -> None:
    doc: dict[str, Any] = {"id": "t1", "title": "A task"}
    doc.update(changes)
    with pytest.raises(InvalidInput, match=message):
        tasks.task_from_dict(doc)


def test_file_name_must_match_id() -> None:
    with pytest.raises(InvalidInput, match="file name says id 'other'"):
        tasks.task_from_dict({"id": "t1", "title": "x"}, expected_id="other")


def test_unknown_keys_survive_a_rewrite() -> None:
    text = "id: t1\ntitle: T\nowner_team: payments\nnotes: {a: [1, 2]}\n"
    task = tasks.parse_task_text(text)
    again = tasks.parse_task_text(task.to_yaml())
    assert again.extra == {"owner_team": "payments", "notes": {"a": [1, 2]}}
    assert again == task


def test_yaml_timestamps_written_by_hand_are_accepted() -> None:
    task = tasks.parse_task_text("id: t1\ntitle: T\ncreated_at: 2026-11-23 10:00:00\n")
    assert task.created_at == 1795428000.0
    assert "2026-11-23T10:00:00.000Z" in task.to_yaml()


prose = st.characters(blacklist_categories=("Cc", "Cs"), whitelist_characters="\n\t")
ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
words = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,10}", fullmatch=True)
lines = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x85\u2028\u2029"),
    min_size=1,
    max_size=60,
).filter(lambda s: s.strip() != "")


@st.composite
def task_docs(draw: st.DrawFn) -> Task:
    task_id = draw(ids)
    return Task(
        id=task_id,
        title=draw(lines),
        description=draw(st.none() | st.text(prose, max_size=200)),
        priority=draw(st.integers(0, 100)),
        role=draw(st.none() | words),
        labels=tuple(draw(st.lists(words, max_size=3, unique=True))),
        depends_on=tuple(
            draw(st.lists(ids.filter(lambda d: d != task_id), max_size=3, unique=True))
        ),
        verify=draw(st.none() | lines),
        timeout=draw(st.none() | st.floats(1, 1e6)),
        attempts=draw(st.integers(0, 10)),
        pressure=draw(st.floats(-1, 1)),
        pressure_at=draw(st.none() | st.integers(0, 2_000_000_000).map(float)),
        created_at=draw(st.integers(0, 2_000_000_000).map(lambda s: s + 0.125)),
    )


@given(task_docs())
def test_round_trip_through_yaml(task: Task) -> None:
    assert tasks.parse_task_text(task.to_yaml(), expected_id=task.id) == task


@given(task_docs())
def test_round_trip_through_the_list_cache_form(task: Task) -> None:
    assert Task.from_native(task.to_native()) == task


@given(st.text(max_size=400))
def test_any_text_either_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        tasks.parse_task_text(text)
    except InvalidInput as exc:
        assert str(exc)


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_any_yaml_document_either_parses_or_is_refused_cleanly(doc: object) -> None:
    try:
        tasks.parse_task_text(yamlio.dump(doc))
    except InvalidInput as exc:
        assert str(exc)
