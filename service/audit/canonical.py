"""Canonical event encoding (RFC 8785, JCS) and the RFC 9162 leaf hash.

Every audit event is hashed from its canonical bytes, so any verifier that re-encodes the
event with a conforming JCS implementation gets the same leaf hash: keys sorted by UTF-16
code units, no insignificant whitespace, ECMAScript number formatting, minimal escaping.
"""

from __future__ import annotations

import hashlib

import rfc8785

__all__ = ["LEAF_PREFIX", "CanonicalizationError", "canonical_json", "leaf_hash"]

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
    # rfc8785.dumps is typed for JSON values only; the checks above happen inside it.
    result: bytes = rfc8785.dumps(value)  # type: ignore[arg-type]
    return result


def leaf_hash(event_bytes: bytes) -> bytes:
    """Return the RFC 9162 leaf hash SHA-256(0x00 || event_bytes)."""
    return hashlib.sha256(LEAF_PREFIX + event_bytes).digest()
