"""Recording ethics reviews and finding the one in force."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import log as audit
from service.audit.actions import AuditAction
from service.core.clock import as_utc, iso
from service.core.deps import Actor
from service.reviews.models import EthicsReview
from service.reviews.schemas import ReviewCreate, ReviewOutcome

APPROVING = {ReviewOutcome.APPROVED.value, ReviewOutcome.APPROVED_WITH_CONDITIONS.value}


def latest_review(session: Session, version_id: str) -> EthicsReview | None:
    """The review in force for a version: the most recently recorded one."""
    return session.scalar(
        select(EthicsReview)
        .where(EthicsReview.version_id == version_id)
        .order_by(EthicsReview.ordinal.desc())
        .limit(1)
    )


def list_reviews(session: Session, version_id: str) -> list[EthicsReview]:
    return list(
        session.scalars(
            select(EthicsReview)
            .where(EthicsReview.version_id == version_id)
            .order_by(EthicsReview.ordinal)
        )
    )


def approves_at(review: EthicsReview | None, now: datetime) -> bool:
    if review is None or review.outcome not in APPROVING:
        return False
    return as_utc(review.valid_from) <= now < as_utc(review.valid_until)


def review_audit_document(review: EthicsReview | None) -> dict[str, Any] | None:
    """The review as the audit log records it (RFC 3339 times: JSON-safe integers only)."""
    if review is None:
        return None
    return {
        "id": review.id,
        "outcome": review.outcome,
        "conditions": list(review.conditions),
        "reference": review.reference,
        "valid_from": iso(review.valid_from),
        "valid_until": iso(review.valid_until),
    }


def record_review(
    session: Session,
    actor: Actor,
    *,
    agreement_id: str,
    version: int,
    version_id: str,
    data: ReviewCreate,
    now: datetime,
) -> EthicsReview:
    previous = latest_review(session, version_id)
    review = EthicsReview(
        id=str(uuid.uuid4()),
        ordinal=previous.ordinal + 1 if previous is not None else 1,
        agreement_id=agreement_id,
        version=version,
        version_id=version_id,
        outcome=data.outcome.value,
        conditions=list(data.conditions),
        reference=data.reference,
        valid_from=as_utc(data.valid_from),
        valid_until=as_utc(data.valid_until),
        reviewer_subject=actor.principal.subject,
        reviewer_org=actor.principal.organisation_id,
        recorded_at=now,
    )
    session.add(review)
    session.flush()
    audit.append(
        session,
        actor,
        audit.EventRecord(
            AuditAction.ETHICS_REVIEW_RECORDED,
            "ethics_review",
            review.id,
            agreement_id=agreement_id,
            agreement_version=version,
            ethics_review=review_audit_document(review),
        ),
        now,
    )
    return review
