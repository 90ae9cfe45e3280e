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
    "word " * 20 + "end", "word " * 22 + "end",
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
keys = st.one_of(st.sampled_from(["id", "title", "depends_on", "yes", "a b", "1"]), st.text())
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
near_values = st.one_of(near_plain, st.lists(near_plain, max_size=3))
near_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, values, max_size=8))
def test_any_mapping_is_written_as_pyyaml_writes_it(doc: dict[str, Any]) -> None:
    assert yamlio.dump(doc) == yamlio._dump_pyyaml(doc)


@settings(max_examples=700, deadline=None)
@given(st.dictionaries(near_keys, near_values, min_size=1, max_size=5))
def test_flat_mappings_are_written_as_pyyaml_writes_them(doc: dict[str, Any]) -> None:
    assert yamlio.dump(doc) == yamlio._dump_pyyaml(doc)


def test_a_task_file_is_written_by_the_fast_writer() -> None:
    """Otherwise the comparison above proves nothing about the files agents write."""
    doc = tasks.new_task(
        {"id": "t1", "title": "Add a parser", "labels": ["core", "v2"], "priority": 70},
        now=1_764_000_000.0,
        created_by="alpha",
    ).to_dict()
    assert yamlio._dump_flat(doc) is not None
    assert yamlio.load(yamlio.dump(doc)) == doc


def test_long_lines_fold_as_pyyaml_folds_them() -> None:
    for key in ("id", "title", "description_of_it"):
        for length in range(85, 115):
            text = ("word " * 30)[:length].strip()
            for doc in ({key: text}, {key: [text]}):
                assert yamlio.dump(doc) == yamlio._dump_pyyaml(doc), (key, length)
