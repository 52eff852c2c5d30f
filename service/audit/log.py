"""Appending to the audit log, inside the caller's transaction.

The event and the change it records commit together or not at all. The sequence number
comes from incrementing the single `audit_head` row: the row lock (PostgreSQL) or the
database write lock (SQLite) is held until commit, so leaf indexes are gapless and follow
commit order across threads, workers and replicas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm import Session

from service.audit.actions import AuditAction, Outcome
from service.audit.canonical import canonical_json, leaf_hash
from service.audit.models import AuditEvent, AuditHead
from service.core.clock import iso
from service.core.database import Base, driver_cursor, insert_rows
from service.core.identity import Actor
from service.core.ids import uuid7


@dataclass(frozen=True, slots=True)
class EventRecord:
    """What a caller says about one change or decision."""

    action: AuditAction
    resource_type: str
    resource_id: str
    outcome: Outcome = Outcome.SUCCESS
    agreement_id: str | None = None
    agreement_version: int | None = None
    purpose: str | None = None
    reasons: Sequence[str] = ()
    minimisation: Mapping[str, Any] | None = None
    ethics_review: Mapping[str, Any] | None = None
    policy_revision: str | None = None
    subjects: Sequence[str] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


def event_document(event: AuditEvent | SimpleNamespace) -> dict[str, Any]:
    """The exact document a leaf hashes (RFC 8785 canonical JSON of this): of a stored
    event, or of a new event's columns as attributes."""
    return {
        "seq": event.seq,
        "event_id": event.event_id,
        "occurred_at": event.occurred_at,
        "action": event.action,
        "actor": {
            "subject": event.actor_subject,
            "role": event.actor_role,
            "organisation": event.actor_org,
        },
        "resource": {"type": event.resource_type, "id": event.resource_id},
        "agreement": (
            None
            if event.agreement_id is None
            else {"id": event.agreement_id, "version": event.agreement_version}
        ),
        "purpose": event.purpose,
        "outcome": event.outcome,
        "reasons": list(event.reasons),
        "minimisation": event.minimisation,
        "ethics_review": event.ethics_review,
        "policy_revision": event.policy_revision,
        "request_id": event.request_id,
        "subjects": list(event.subjects),
        "details": event.details,
    }


_RESERVE = (
    update(AuditHead)
    .where(AuditHead.id == 1)
    .values(size=AuditHead.size + bindparam("count"))
    .returning(AuditHead.size)
)
_EVENTS = Base.metadata.tables[AuditEvent.__tablename__]
# The subject index rows (SQLite), written below the expression layer (a batch brings 10,000).
_INSERT_SUBJECTS = "INSERT INTO audit_event_subjects (seq, pseudonym) VALUES (?, ?)"


# PostgreSQL, when the append is the transaction's first statement (the decision writer's
# case): BEGIN and the reservation in one round trip, where psycopg would send its BEGIN
# alone first. The count is an int, formatted into the text; a simple query may hold both.
_BEGIN_AND_RESERVE = "BEGIN; UPDATE audit_head SET size = size + {:d} WHERE id = 1 RETURNING size"


def _reserve(session: Session, count: int) -> int:
    """Reserve `count` leaf indexes; returns the first."""
    if not session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        return _begin_and_reserve(session, count)
    new_size = session.connection().execute(_RESERVE, {"count": count}).scalar_one()
    return int(new_size) - count


def _begin_and_reserve(session: Session, count: int) -> int:
    """Begin the session's transaction with the reservation. The connection is taken in
    autocommit mode, so that neither SQLAlchemy nor psycopg sends a BEGIN of its own; the
    explicit one makes the rest of the session's work one transaction, which its commit or
    rollback ends (psycopg sends COMMIT or ROLLBACK while the server reports a transaction
    open, autocommit or not)."""
    connection = session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    statement = _BEGIN_AND_RESERVE.format(count)
    with driver_cursor(connection, statement) as cursor:
        cursor.execute(statement)
        cursor.nextset()  # past the BEGIN's result, to the UPDATE's
        row = cursor.fetchone()
    if row is None:
        raise NoResultFound("the audit head row is missing")
    return int(row[0]) - count


def _event_row(actor: Actor, record: EventRecord, at: datetime) -> dict[str, Any]:
    """The new event's columns but `seq` and `leaf_hash` (plain values: an ORM object
    per event would cost more than hashing and inserting it)."""
    principal = actor.principal
    return {
        "event_id": uuid7(),
        "occurred_at": iso(at),
        "action": record.action.value,
        "actor_subject": principal.subject,
        "actor_role": principal.role.value,
        "actor_org": principal.organisation_id,
        "resource_type": record.resource_type,
        "resource_id": record.resource_id,
        "agreement_id": record.agreement_id,
        "agreement_version": record.agreement_version,
        "purpose": record.purpose,
        "outcome": record.outcome.value,
        "reasons": list(record.reasons),
        "minimisation": dict(record.minimisation) if record.minimisation is not None else None,
        "ethics_review": dict(record.ethics_review) if record.ethics_review is not None else None,
        "policy_revision": record.policy_revision,
        "request_id": actor.request_id,
        "subjects": list(record.subjects),
        "details": dict(record.details),
    }


def append_many(
    session: Session, entries: Sequence[tuple[Actor, EventRecord, datetime]]
) -> list[int]:
    """Add events to the log in the current transaction, in order; returns their indexes.

    Everything but the sequence numbers is prepared first, so that the head row stays
    locked only for the hashing and the inserts.
    """
    session.flush()  # the caller's pending changes, before the head row is locked
    rows = [_event_row(actor, record, at) for actor, record, at in entries]
    first = _reserve(session, len(rows))
    for seq, row in enumerate(rows, start=first):
        row["seq"] = seq
        row["leaf_hash"] = leaf_hash(canonical_json(event_document(SimpleNamespace(**row))))
    connection = session.connection()
    insert_rows(connection, _EVENTS, rows)
    if connection.dialect.name != "postgresql":
        # On PostgreSQL a trigger adds the subject rows of the inserted events (migration
        # 0005); on SQLite plain DB-API executemany, as the expression layer's per-row
        # parameter processing costs more than the insert itself. In pseudonym order: the
        # table, keyed by (pseudonym, seq), then takes a batch's 10,000 rows in a third
        # less time.
        subjects = sorted(
            {(row["seq"], p) for row in rows for p in row["subjects"]}, key=itemgetter(1)
        )
        if subjects:
            connection.exec_driver_sql(_INSERT_SUBJECTS, subjects)
    return [row["seq"] for row in rows]


def append(session: Session, actor: Actor, record: EventRecord, at: datetime) -> int:
    """Add one event to the log in the current transaction; returns its leaf index."""
    return append_many(session, [(actor, record, at)])[0]
