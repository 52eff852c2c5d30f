"""Canonical event encoding (RFC 8785, JCS) and the RFC 9162 leaf hash.

Every audit event is hashed from its canonical bytes, so any verifier that re-encodes the
event with a conforming JCS implementation gets the same leaf hash: keys sorted by UTF-16
code units, no insignificant whitespace, ECMAScript number formatting, minimal escaping.
Events (strings, safe integers, booleans, nulls, ASCII keys) are encoded by orjson, whose
output is already canonical for such values and ten times faster; anything else goes to
the rfc8785 reference implementation.
"""

from __future__ import annotations

import hashlib

import orjson
import rfc8785

__all__ = [
    "LEAF_PREFIX",
    "MAX_SAFE_INTEGER",
    "CanonicalizationError",
    "canonical_json",
    "leaf_hash",
]

# RFC 9162 §2.1.1 domain separation: leaves are prefixed 0x00, interior nodes 0x01, so a
# leaf can never be passed off as an interior node (second-preimage resistance).
LEAF_PREFIX = b"\x00"

CanonicalizationError = rfc8785.CanonicalizationError


def canonical_json(value: object) -> bytes:
    """Encode a JSON value (dict/list/str/int/float/bool/None) as RFC 8785 canonical bytes.

    Raises CanonicalizationError (a ValueError) for what JCS cannot represent: NaN and
    infinities, integers outside ±(2**53 - 1), non-string keys, lone surrogates and
    non-JSON types.
    """
    if _plain(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # e.g. a lone surrogate: rfc8785 says what is wrong
            pass
    # rfc8785.dumps is typed for JSON values only; the checks above happen inside it.
    result: bytes = rfc8785.dumps(value)  # type: ignore[arg-type]
    return result


MAX_SAFE_INTEGER = 2**53 - 1  # I-JSON's exact integers: JCS refuses any beyond


def _plain(value: object) -> bool:
    """Whether orjson's key-sorted compact output is already the JCS form of `value`.

    It is for strings (both escape exactly `"`, `\\` and the C0 controls, the same way),
    integers within ±(2**53 - 1), booleans, null, and arrays and objects of those whose keys
    are ASCII. Not for floats (JCS formats numbers as ECMAScript does) nor for other keys
    (JCS sorts by UTF-16 code units, orjson by code point). Events are plain; the rest goes
    to the reference implementation. tests/audit/test_canonical.py checks both agree.
    """
    if type(value) is str or type(value) is bool or value is None:
        return True
    if type(value) is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if type(value) is list:
        return all(type(item) is str or _plain(item) for item in value)
    if type(value) is dict:
        # A loop, not all(...): this runs for every audit event, and string values (most of
        # them) are settled without a call.
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False
            if type(item) is not str and not _plain(item):
                return False
        return True
    return False


def leaf_hash(event_bytes: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || event_bytes)."""
    return hashlib.sha256(LEAF_PREFIX + event_bytes).digest()
