"""Searching, counting and exporting audit events, scoped to what the caller may see.

Scope: auditors and admins see every event; a steward sees the events its organisation
acted in and those of agreements its organisation is a party to (a party of the event's
agreement version, or of any version when the event names none); a partner sees the events
its organisation acted in (its own decisions and consents). Other roles see nothing.

Purpose filters include descendants (`research` matches `research.public_health`), as
permitting a purpose does in agreements.

Ordering is by `seq`, the leaf index: unique and fixed forever, so keyset cursors are
stable while the log grows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, cast, exists, false, func, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, sessionmaker

from service.agreements.models import AgreementParty, AgreementVersion
from service.audit import tree
from service.audit.models import AuditEvent, AuditEventSubject
from service.core.clock import iso
from service.core.database import transaction
from service.core.errors import NotFound
from service.core.identity import Principal, Role

__all__ = [
    "EventFilter",
    "GroupBy",
    "count_events",
    "export_pages",
    "find_events",
    "visible_event",
]


class GroupBy(StrEnum):
    OUTCOME = "outcome"
    REASON = "reason"
    AGREEMENT = "agreement"
    PURPOSE = "purpose"


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Search criteria; every given one must hold. `subject_pseudonym` is already keyed."""

    since: datetime | None = None
    until: datetime | None = None
    organisation: str | None = None
    agreement_id: str | None = None
    purpose: str | None = None
    action: str | None = None
    outcome: str | None = None
    reason: str | None = None
    actor: str | None = None
    subject_pseudonym: str | None = None


def _scope(session: Session, principal: Principal) -> ColumnElement[bool]:
    if principal.role in (Role.AUDITOR, Role.ADMIN):
        return true()
    org = principal.organisation_id
    if principal.role is Role.PARTNER:
        return AuditEvent.actor_org == org
    if principal.role is not Role.STEWARD:
        return false()
    # The steward's agreements are looked up first (a short list), so that the event
    # query can use the agreement_id index instead of a correlated subquery per event.
    party_of: dict[str, set[int]] = {}
    every: dict[str, set[int]] = {}
    rows = session.execute(
        select(
            AgreementVersion.agreement_id, AgreementVersion.version, AgreementParty.organisation_id
        )
        .join(AgreementParty, AgreementParty.version_id == AgreementVersion.id)
        .where(
            AgreementVersion.agreement_id.in_(
                select(AgreementVersion.agreement_id)
                .join(AgreementParty, AgreementParty.version_id == AgreementVersion.id)
                .where(AgreementParty.organisation_id == org)
            )
        )
    )
    for agreement_id, version, party in rows:
        every.setdefault(agreement_id, set()).add(version)
        if party == org:
            party_of.setdefault(agreement_id, set()).add(version)
    whole = sorted(a for a, versions in party_of.items() if versions == every[a])
    visible = [AuditEvent.actor_org == org]
    if whole:
        visible.append(AuditEvent.agreement_id.in_(whole))
    for agreement_id in sorted(party_of.keys() - set(whole)):  # a party of some versions
        visible.append(
            and_(
                AuditEvent.agreement_id == agreement_id,
                or_(
                    AuditEvent.agreement_version.is_(None),
                    AuditEvent.agreement_version.in_(sorted(party_of[agreement_id])),
                ),
            )
        )
    return or_(*visible)


def _has_reason(dialect: str, code: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        # No index (it would cost every decision an index insert): cheap per row, and a
        # rare code is best searched together with a time window or an agreement.
        return cast(AuditEvent.reasons, JSONB).contains([code])
    values = func.json_each(AuditEvent.reasons).table_valued("value")
    return exists().select_from(values).where(values.c.value == code)


def _conditions(criteria: EventFilter, dialect: str) -> list[ColumnElement[bool]]:
    c = criteria
    out: list[ColumnElement[bool]] = []
    if c.since is not None:
        out.append(AuditEvent.occurred_at >= iso(c.since))
    if c.until is not None:
        out.append(AuditEvent.occurred_at < iso(c.until))
    if c.organisation is not None:
        out.append(AuditEvent.actor_org == c.organisation)
    if c.agreement_id is not None:
        out.append(AuditEvent.agreement_id == c.agreement_id)
    if c.purpose is not None:  # a purpose includes its descendants, as in agreements
        out.append(
            or_(
                AuditEvent.purpose == c.purpose,
                AuditEvent.purpose.startswith(c.purpose + ".", autoescape=True),
            )
        )
    if c.action is not None:
        out.append(AuditEvent.action == c.action)
    if c.outcome is not None:
        out.append(AuditEvent.outcome == c.outcome)
    if c.reason is not None:
        out.append(_has_reason(dialect, c.reason))
    if c.actor is not None:
        out.append(AuditEvent.actor_subject == c.actor)
    if c.subject_pseudonym is not None:
        out.append(
            AuditEvent.seq.in_(
                select(AuditEventSubject.seq).where(
                    AuditEventSubject.pseudonym == c.subject_pseudonym
                )
            )
        )
    return out


def _spans(session: Session, criteria: EventFilter) -> list[tuple[int, int | None]]:
    """Ascending seq ranges that can hold events of the criteria's time window.

    Without them a time window makes the database pick between scanning in seq order from
    the start (it cannot know that time follows seq) and sorting the whole window; with
    them the seq-ordered scan starts where the window does.
    """
    if criteria.since is None and criteria.until is None:
        return [(0, None)]
    since = None if criteria.since is None else iso(criteria.since)
    until = None if criteria.until is None else iso(criteria.until)
    lo, hi, indexed = tree.time_span(session, since, until)
    if hi >= indexed:
        return [(lo, None)]
    return [(lo, hi), (indexed, None)]  # the window's blocks, then the unindexed tail


def _in_spans(spans: list[tuple[int, int | None]]) -> ColumnElement[bool]:
    return or_(
        *(
            AuditEvent.seq >= lo if hi is None else and_(AuditEvent.seq >= lo, AuditEvent.seq < hi)
            for lo, hi in spans
        )
    )


def _where(session: Session, principal: Principal, criteria: EventFilter) -> ColumnElement[bool]:
    dialect = session.get_bind().dialect.name
    return and_(_scope(session, principal), *_conditions(criteria, dialect))


def find_events(
    session: Session,
    principal: Principal,
    criteria: EventFilter,
    *,
    after: int | None,
    limit: int,
    descending: bool = False,
) -> tuple[list[AuditEvent], int | None]:
    """One page of matching events and the cursor (a seq) of the next page, if any."""
    query = select(AuditEvent).where(_where(session, principal, criteria))
    if after is not None:
        query = query.where(AuditEvent.seq < after if descending else AuditEvent.seq > after)
    order = AuditEvent.seq.desc() if descending else AuditEvent.seq.asc()
    spans = _spans(session, criteria)
    rows: list[AuditEvent] = []
    for lo, hi in reversed(spans) if descending else spans:  # one ordered range scan each
        bounded = query.where(AuditEvent.seq >= lo)
        if hi is not None:
            bounded = bounded.where(AuditEvent.seq < hi)
        rows += session.scalars(bounded.order_by(order).limit(limit + 1 - len(rows)))
        if len(rows) > limit:
            break
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].seq
    return rows, None


def visible_event(session: Session, principal: Principal, seq: int) -> AuditEvent:
    """The event at `seq` if the caller may see it; NotFound otherwise (no existence leak)."""
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.seq == seq, _scope(session, principal))
    ).first()
    if event is None:
        raise NotFound(f"audit event {seq} not found")
    return event


def count_events(
    session: Session, principal: Principal, criteria: EventFilter, group_by: GroupBy
) -> list[tuple[str | None, int]]:
    """Matching events counted per group, largest first (an event counts once per reason)."""
    dialect = session.get_bind().dialect.name
    key: Any
    query: Select[Any]
    if group_by is GroupBy.REASON:
        if dialect == "postgresql":
            elements = func.json_array_elements_text(AuditEvent.reasons)
            values: Any = elements.table_valued("value").lateral()
        else:
            values = func.json_each(AuditEvent.reasons).table_valued("value")
        key = values.c.value
        query = select(key, func.count()).select_from(AuditEvent).join(values, true())
    else:
        key = {
            GroupBy.OUTCOME: AuditEvent.outcome,
            GroupBy.AGREEMENT: AuditEvent.agreement_id,
            GroupBy.PURPOSE: AuditEvent.purpose,
        }[group_by]
        query = select(key, func.count()).select_from(AuditEvent)
    where = _where(session, principal, criteria)
    query = query.where(where, _in_spans(_spans(session, criteria))).group_by(key)
    rows = session.execute(query.order_by(func.count().desc(), key)).all()
    return [(None if k is None else str(k), int(n)) for k, n in rows]


def export_pages(
    factory: sessionmaker[Session],
    principal: Principal,
    criteria: EventFilter,
    upto: int,
    page: int = 1_000,
) -> Iterator[list[AuditEvent]]:
    """Matching events with seq < upto, a page at a time, each page its own short read."""
    after = -1
    while True:
        for session in transaction(factory):
            query = (
                select(AuditEvent)
                .where(_where(session, principal, criteria), AuditEvent.seq > after)
                .where(AuditEvent.seq < upto, _in_spans(_spans(session, criteria)))
                .order_by(AuditEvent.seq)
                .limit(page)
            )
            rows = list(session.scalars(query))
        if not rows:
            return
        yield rows
        after = rows[-1].seq
