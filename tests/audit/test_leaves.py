"""The fast leaf-hash path gives exactly the RFC 8785 bytes, or defers to the reference."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.audit.canonical import LEAF_PREFIX, CanonicalizationError, canonical_json
from service.audit.leaves import row_document, row_leaf_hash

text = st.text(st.characters(codec="utf-8"), max_size=8) | st.sampled_from(
    ["", "a", "\ue000", "\U0001f600", "é", '"\\\n\x00', "\u2028"]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12,
)


def as_row(seq: int, strings: list[str], nested: list[Any]) -> list[Any]:
    """A LEAF_COLUMNS row as the database returns it (JSON columns as stored text)."""
    reasons, minimisation, ethics, subjects, details = (json.dumps(v) for v in nested)
    return [
        seq, *strings[:8], "agr", 3, strings[8], "deny",
        reasons, minimisation, ethics, strings[9], None, subjects, details, b"",
    ]  # fmt: skip


def reference(row: list[Any]) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + canonical_json(row_document(row))).digest()


@settings(max_examples=400, deadline=None)
@given(
    seq=st.integers(min_value=0, max_value=2**53 - 1),
    strings=st.lists(text, min_size=10, max_size=10),
    nested=st.lists(json_values, min_size=5, max_size=5),
)
def test_fast_hash_equals_the_reference(seq: int, strings: list[str], nested: list[Any]) -> None:
    row = as_row(seq, strings, nested)
    try:
        expected = reference(row)
    except CanonicalizationError:  # not representable in JCS (e.g. integers beyond 2**53)
        with pytest.raises(CanonicalizationError):
            row_leaf_hash(row)
        return
    assert row_leaf_hash(row) == expected


@pytest.mark.parametrize(
    "details",
    [
        {"ratio": 0.5, "n": 1.0},  # floats: JCS writes 1.0 as 1
        {"\ue000": 1, "\U0001f600": 2},  # keys that sort differently in UTF-16
        {"big": 2**53 + 1},  # outside JCS's integer range
    ],
)
def test_awkward_values_take_the_reference_path(details: dict[str, Any]) -> None:
    row = as_row(1, ["s"] * 10, [[], None, None, [], details])
    try:
        expected = reference(row)
    except CanonicalizationError:
        with pytest.raises(CanonicalizationError):
            row_leaf_hash(row)
        return
    assert row_leaf_hash(row) == expected


def test_a_row_can_be_hashed_as_if_at_another_position() -> None:
    row = as_row(5, ["s"] * 10, [["r"], None, None, ["ps_1"], {"k": "v"}])
    moved = as_row(9, ["s"] * 10, [["r"], None, None, ["ps_1"], {"k": "v"}])
    assert row_leaf_hash(row, 9) == row_leaf_hash(moved)
    assert row_document(row, 9)["seq"] == 9


@pytest.mark.parametrize("column", [13, 14, 15, 18, 19])
def test_null_and_malformed_json_columns_take_the_reference_path(column: int) -> None:
    row = as_row(2, ["s"] * 10, [["r"], {"a": 1}, None, ["ps_1"], {"k": "v"}])
    row[column] = None
    assert row_leaf_hash(row) == reference(row)
    row[column] = '["a"] ["b"]'  # trailing text: not one JSON value
    with pytest.raises(ValueError, match="Extra data"):
        row_leaf_hash(row)
