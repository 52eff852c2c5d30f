"""Leaf hashes recomputed from stored rows, fast enough to verify 100,000+ events a second.

`row_leaf_hash(row)` rebuilds `log.event_document` from a row of `LEAF_COLUMNS` and hashes
its RFC 8785 encoding. The reference encoder (`rfc8785`) costs ~60 µs per event, so the
common case takes a fast path: the fixed top level is written as a template (its keys are
ASCII, already in JCS order) with strings quoted by the stdlib's C string encoder, and the
five JSON columns go through the C JSON encoder with sorted keys and no whitespace. Both
produce exactly the JCS bytes for strings, integers within ±(2**53 - 1), booleans, null,
arrays and objects whose keys sort the same by code point and by UTF-16 code unit.
Whatever might break that (floats, big integers, NaN, escapes or non-ASCII text that could
hide keys sorting differently in UTF-16, values of the wrong type) is detected on the way
and sent to the reference encoder instead, so the result is always the RFC 8785 encoding.

JSON columns are selected as text (`CAST(... AS TEXT)`) so that both SQLite and PostgreSQL
hand back the stored JSON and the C scanner decodes it, with no driver-level parsing.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import json.scanner
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Select, Text, cast, select
from sqlalchemy.orm import Session

from service.audit.canonical import LEAF_PREFIX, MAX_SAFE_INTEGER, canonical_json
from service.audit.models import AuditEvent

__all__ = [
    "LEAF_COLUMNS",
    "LeafRow",
    "fetch_leaf_rows",
    "leaf_rows",
    "row_document",
    "row_leaf_hash",
]

LeafRow = Sequence[Any]

LEAF_COLUMNS = (
    AuditEvent.seq,
    AuditEvent.event_id,
    AuditEvent.occurred_at,
    AuditEvent.action,
    AuditEvent.actor_subject,
    AuditEvent.actor_role,
    AuditEvent.actor_org,
    AuditEvent.resource_type,
    AuditEvent.resource_id,
    AuditEvent.agreement_id,
    AuditEvent.agreement_version,
    AuditEvent.purpose,
    AuditEvent.outcome,
    cast(AuditEvent.reasons, Text),
    cast(AuditEvent.minimisation, Text),
    cast(AuditEvent.ethics_review, Text),
    AuditEvent.policy_revision,
    AuditEvent.request_id,
    cast(AuditEvent.subjects, Text),
    cast(AuditEvent.details, Text),
    AuditEvent.leaf_hash,
)
SEQ, LEAF = 0, 20


class _NeedsReference(Exception):
    """The fast encoding might differ from RFC 8785 for this row."""


def _refuse_float(_: str) -> Any:
    raise _NeedsReference


def _checked_int(text: str) -> int:
    value = int(text)
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    raise _NeedsReference


def _refuse_default(_: object) -> Any:
    raise _NeedsReference


_plain_decode = json.JSONDecoder().decode
# The C scanner, without JSONDecoder.decode's Python wrapper; it neither skips whitespace
# nor checks for trailing text, so callers compare the end offset with the length.
_decoder = json.JSONDecoder(
    parse_float=_refuse_float, parse_int=_checked_int, parse_constant=_refuse_float
)
_scan: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_decoder)  # type: ignore[arg-type]
_quote = json.encoder.encode_basestring  # escapes exactly what JCS escapes (", \\, < 0x20)


def _build_encoder() -> Callable[[object, int], Iterable[str]]:
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pure-Python builds: slower, same bytes
        encoder = json.JSONEncoder(
            sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        return lambda value, _: encoder.iterencode(value)
    iterencode: Callable[[object, int], Iterable[str]] = make(
        None, _refuse_default, _quote, None, ":", ",", True, False, False
    )
    return iterencode


_encode = _build_encoder()


def _json_text(value: str | None) -> str:
    return "null" if value is None else value


def _canonical(text: str) -> str:
    """The JCS text of one JSON column's stored text (fast path only)."""
    # Escapes or non-ASCII could hide keys that sort differently in UTF-16.
    if type(text) is not str or not text.isascii() or "\\u" in text:
        raise _NeedsReference
    try:
        value, end = _scan(text, 0)
    except StopIteration:  # no JSON value at the start: the reference decoder says why
        raise _NeedsReference from None
    if end != len(text):  # one column's text must not spill into the next
        raise _NeedsReference
    return "".join(_encode(value, 0))


class _Memo(dict[str, str]):
    """A bounded memo of `_canonical` for columns with few distinct values."""

    def __missing__(self, text: str) -> str:
        if len(self) >= 4_096:
            self.clear()
        self[text] = result = _canonical(text)
        return result


# Reasons, minimisation, ethics reviews and details repeat across events; subjects do not.
_reasons, _minimisation, _ethics, _details = _Memo(), _Memo(), _Memo(), _Memo()


def _fast_text(row: LeafRow, seq: int) -> str:
    """JCS text of the row's document, for rows the stdlib encoders render exactly."""
    version = row[10]
    if type(seq) is not int or not 0 <= seq <= MAX_SAFE_INTEGER:
        raise _NeedsReference
    if version is not None and (type(version) is not int or abs(version) > MAX_SAFE_INTEGER):
        raise _NeedsReference
    # SQL NULL in a nullable JSON column means JSON null; NOT NULL ones stay None and fail.
    minimisation, ethics_review = row[14], row[15]
    agreement_id = row[9]
    agreement = (
        "null"
        if agreement_id is None
        else f'{{"id":{_quote(agreement_id)},"version":{"null" if version is None else version}}}'
    )
    q = _quote
    # Keys in RFC 8785 order (all ASCII, so code-point order is UTF-16 order).
    return "".join(
        (
            '{"action":', q(row[3]),
            ',"actor":{"organisation":', q(row[6]), ',"role":', q(row[5]),
            ',"subject":', q(row[4]),
            '},"agreement":', agreement,
            ',"details":', _details[row[19]],
            ',"ethics_review":', "null" if ethics_review is None else _ethics[ethics_review],
            ',"event_id":', q(row[1]),
            ',"minimisation":', "null" if minimisation is None else _minimisation[minimisation],
            ',"occurred_at":', q(row[2]),
            ',"outcome":', q(row[12]),
            ',"policy_revision":', "null" if row[16] is None else q(row[16]),
            ',"purpose":', "null" if row[11] is None else q(row[11]),
            ',"reasons":', _reasons[row[13]],
            ',"request_id":', "null" if row[17] is None else q(row[17]),
            ',"resource":{"id":', q(row[8]), ',"type":', q(row[7]),
            '},"seq":', str(seq),
            ',"subjects":', _canonical(row[18]),
            "}",
        )
    )  # fmt: skip


def row_document(row: LeafRow, seq: int | None = None) -> dict[str, Any]:
    """The event document of a `LEAF_COLUMNS` row (optionally as if it sat at `seq`)."""
    nested = [_plain_decode(_json_text(row[i])) for i in (13, 14, 15, 18, 19)]
    reasons, minimisation, ethics_review, subjects, details = nested
    agreement_id = row[9]
    return {
        "seq": row[SEQ] if seq is None else seq,
        "event_id": row[1],
        "occurred_at": row[2],
        "action": row[3],
        "actor": {"subject": row[4], "role": row[5], "organisation": row[6]},
        "resource": {"type": row[7], "id": row[8]},
        "agreement": None if agreement_id is None else {"id": agreement_id, "version": row[10]},
        "purpose": row[11],
        "outcome": row[12],
        "reasons": reasons,
        "minimisation": minimisation,
        "ethics_review": ethics_review,
        "policy_revision": row[16],
        "request_id": row[17],
        "subjects": subjects,
        "details": details,
    }


def row_leaf_hash(row: LeafRow, seq: int | None = None) -> bytes:
    """SHA-256(0x00 || JCS(document)) of a row; raises ValueError if it has no JCS form."""
    at = row[SEQ] if seq is None else seq
    try:
        encoded = _fast_text(row, at).encode("utf-8")
    except (_NeedsReference, UnicodeEncodeError, TypeError, ValueError):
        encoded = canonical_json(row_document(row, at))
    return hashlib.sha256(LEAF_PREFIX + encoded).digest()


def fetch_leaf_rows(
    session: Session, start: int, end: int | None = None, limit: int | None = None
) -> list[LeafRow]:
    """Rows of `leaf_rows(...)` as plain tuples straight from the driver cursor.

    Skips SQLAlchemy's result processing (a third of the cost of verifying a row); runs on
    the session's own connection, so inside its transaction and snapshot.
    """
    connection = session.connection()
    statement = leaf_rows(start, end, limit).compile(
        dialect=connection.dialect, compile_kwargs={"literal_binds": True}
    )
    cursor = connection.connection.cursor()
    try:
        cursor.execute(str(statement))
        return list(cursor.fetchall())
    finally:
        cursor.close()


def leaf_rows(
    start: int, end: int | None = None, limit: int | None = None
) -> Select[*tuple[Any, ...]]:
    """SELECT of `LEAF_COLUMNS` for seq in [start, end), in seq order."""
    query = select(*LEAF_COLUMNS).where(AuditEvent.seq >= start).order_by(AuditEvent.seq)
    if end is not None:
        query = query.where(AuditEvent.seq < end)
    if limit is not None:
        query = query.limit(limit)
    return query
