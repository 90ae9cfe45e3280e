"""yamlio's own writer of flat mappings must write what PyYAML writes, byte for byte."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stigmergy_cli import tasks, yamlio

# Words YAML reads as something else, and text near every rule the writer applies.
TRICKY = [
    "yes", "No", "ON", "off", "null", "Null", "~", "true", "False", "y", "n", "",
    "1", "-1", "0x1f", "1_000", "1.5", ".inf", ".nan", "1e5", "12:30", "2026-12-01",
    "2026-12-01T17:35:53.057Z", "a:b", "a: b", "a #b", "#a", "-a", "- a", "a ", " a", "a  b",
    "_x", "x/y.z", "it's", '"q"', "tab\there", "two\nlines", "é", "<<", "=", "a,b", "[a]",
    "x" * 98, "x" * 120, "word " * 25, "word " * 18 + "end", "word " * 19 + "end",
    "word " * 20 + "end", "word " * 22 + "end", "4d1c22cdf0d0d9ba8a95611ecbd0ec11407adf2b",
    "12e45", "1e+5", "0o17", "2026-12-01 10", "1.5 apples", "k" * 130,
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(TRICKY),
    st.text(max_size=30),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_./ :-]{0,40}", fullmatch=True),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.just({}),
    st.dictionaries(st.text(max_size=5), scalars, max_size=2),
)
keys = st.one_of(
    st.sampled_from(["id", "title", "depends_on", "yes", "a b", "1", "k" * 130]), st.text()
)
# Mostly what the fast writer takes, so that most examples test it rather than PyYAML.
words = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_./-]{0,20}( [A-Za-z0-9_./-]{1,9}){0,4}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_./ :+-]{1,30}", fullmatch=True),
)
near_plain = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    words,
    st.sampled_from(TRICKY),
)
near_values = st.recursive(
    st.one_of(near_plain, st.lists(near_plain, max_size=3)),
    lambda inner: st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True), inner, max_size=3
    ),
    max_leaves=6,
)
near_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=8))
def test_any_mapping_is_written_as_pyyaml_writes_it(doc: dict[str, Any]) -> None:
    assert yamlio.dump(doc) == yamlio._dump_pyyaml(doc)


@settings(max_examples=700, deadline=None)
@given(st.dictionaries(near_keys, near_values, min_size=1, max_size=5))
def test_flat_mappings_are_written_as_pyyaml_writes_them(doc: dict[str, Any]) -> None:
    assert yamlio.dump(doc) == yamlio._dump_pyyaml(doc)


def test_task_files_are_written_by_the_fast_writer() -> None:
    """Otherwise the comparisons above prove nothing about the files agents write."""
    task = tasks.new_task(
        {"id": "t1", "title": "Add a parser", "labels": ["core", "v2"], "priority": 70},
        now=1_764_000_000.0,
        created_by="alpha",
    )
    done = task.to_dict() | {
        "result": {
            "outcome": "merged",
            "agent": "alpha",
            "commit": "4d1c22cdf0d0d9ba8a95611ecbd0ec11407adf2b",
            "merged": True,
            "finished_at": 1_764_000_123.5,
        }
    }
    for doc in (task.to_dict(), done):
        assert yamlio._dump_simple(doc) is not None
        assert yamlio.load(yamlio.dump(doc)) == doc


def test_long_lines_fold_as_pyyaml_folds_them() -> None:
    for key in ("id", "title", "description_of_it"):
        for length in range(85, 115):
            text = ("word " * 30)[:length].strip()
            for doc in ({key: text}, {key: [text]}):
                assert yamlio.dump(doc) == yamlio._dump_pyyaml(doc), (key, length)


def test_shared_objects_and_odd_floats_are_written_as_pyyaml_writes_them() -> None:
    shared: list[Any] = [[], {}, ["x"], {"k": 1}]
    floats = [1e17, 1e-05, 1.5e300, 0.1, -0.0, 5e-324, 2.0**60, float("inf"), float("nan")]
    docs = [{"a": item, "b": item} for item in shared] + [{"f": f, "g": [f]} for f in floats]
    for doc in docs:
        assert yamlio.dump(doc) == yamlio._dump_pyyaml(doc), doc
