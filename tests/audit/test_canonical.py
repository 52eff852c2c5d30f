"""RFC 8785 (JCS) canonical encoding and the RFC 9162 leaf hash."""

from __future__ import annotations

import hashlib
import json
import math
import struct

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from service.audit.canonical import CanonicalizationError, canonical_json, leaf_hash

# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical form. Cross-checked
# against ECMAScript Number.prototype.toString (node), which JCS adopts.
NUMBER_VECTORS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),  # minus zero
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), NUMBER_VECTORS)
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(value) == expected.encode()


def test_rfc8785_section_3_2_2_example() -> None:
    source = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        r"""{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"""
        r""""string":"€$\u000f\nA'B\"\\\\\"/"}"""
    )
    assert canonical_json(json.loads(source)) == expected.encode("utf-8")


def test_rfc8785_section_3_2_3_key_order_is_by_utf16_code_units() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    encoded = canonical_json(value).decode("utf-8")
    order = [k for k in json.loads(encoded)]
    # U+1F600 is the surrogate pair D83D DE00 in UTF-16, so it sorts before U+FB33 even
    # though its code point is larger.
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1e21, "1e+21"),
        (1e30, "1e+30"),
        (1e20, "100000000000000000000"),
        (4.50, "4.5"),
        (2e-3, "0.002"),
        (1e-7, "1e-7"),
        (-0.0, "0"),
        (1.0, "1"),
        (10, "10"),
        (-(2**53) + 1, "-9007199254740991"),
    ],
)
def test_number_formatting(value: float, expected: str) -> None:
    assert canonical_json(value) == expected.encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\u0000\u001f", '"\\u0000\\u001f"'),
        ("\b\f\n\r\t", '"\\b\\f\\n\\r\\t"'),
        ('"\\', '"\\"\\\\"'),
        ("/\u007f\u00e9\u2028", '"/\u007f\u00e9\u2028"'),  # only controls, " and \ escape
        ("\U0001f600", '"\U0001f600"'),
    ],
)
def test_string_escaping(value: str, expected: str) -> None:
    assert canonical_json(value) == expected.encode("utf-8")


def test_no_whitespace_and_nested_sorting() -> None:
    value = {"b": [1, {"d": True, "c": None}], "a": {}}
    assert canonical_json(value) == b'{"a":{},"b":[1,{"c":null,"d":true}]}'


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        [1.0, math.nan],
        {"x": math.inf},
        2**53,  # beyond I-JSON's exact integer range
        {1: "non-string key"},
        "\ud800",  # lone surrogate
        b"bytes",
        {1, 2},
    ],
)
def test_rejects_what_jcs_cannot_encode(value: object) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_json(value)
    assert issubclass(CanonicalizationError, ValueError)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_round_trip(value: float) -> None:
    encoded = canonical_json(value)
    assert float(encoded) == value
    # Re-parse numbers as doubles, as JSON does: an integral 1e20 would otherwise come
    # back as a Python int beyond 2**53, which JCS rightly refuses.
    assert canonical_json(json.loads(encoded, parse_int=float)) == encoded


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(json_values)
def test_encoding_is_valid_json_and_stable(value: object) -> None:
    encoded = canonical_json(value)
    assert canonical_json(json.loads(encoded, parse_int=float)) == encoded


# Values shaped like audit events (the fast path's domain), with every kind of string and key
# that could make orjson's output differ from JCS: controls, non-ASCII, astral characters.
plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.text(),
    lambda children: (
        st.lists(children)
        | st.dictionaries(st.text(alphabet=st.characters(max_codepoint=127)), children)
    ),
    max_leaves=30,
)
edges = st.integers(min_value=-(2**64), max_value=2**64) | st.sampled_from(["\ud800", 1.5])


@given(plain_values | json_values | st.lists(plain_values | edges, max_size=3))
def test_fast_path_agrees_with_the_reference_implementation(value: object) -> None:
    """canonical_json encodes plain values with orjson; rfc8785 is the reference."""
    try:
        expected = rfc8785.dumps(value)  # type: ignore[arg-type]
    except CanonicalizationError:
        with pytest.raises(CanonicalizationError):
            canonical_json(value)
        return
    assert canonical_json(value) == expected


def test_leaf_hash_is_sha256_of_zero_prefix() -> None:
    assert leaf_hash(b"") == bytes.fromhex(
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert leaf_hash(b"event") == hashlib.sha256(b"\x00event").digest()
    assert len(leaf_hash(canonical_json({"a": 1}))) == 32
