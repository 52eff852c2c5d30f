"""Builds the policy input document: everything the policy needs, nothing it must fetch."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.agreements import service as agreements
from service.agreements.models import Agreement, AgreementVersion
from service.consents import service as consents
from service.core.clock import to_ns
from service.core.identity import Principal
from service.registry import service as registry
from service.registry import taxonomy
from service.registry.models import Purpose
from service.reviews import service as reviews
from service.reviews.models import EthicsReview


def version_for_decision(session: Session, agreement_id: str) -> AgreementVersion | None:
    """The version in force, or else the latest (so that the policy can say why it denies)."""
    agreement = session.get(Agreement, agreement_id)
    if agreement is None:
        return None
    number = agreement.in_force_version or agreement.latest_version
    return agreements.get_version(session, agreement_id, number)


def purpose_lineage(session: Session, code: str) -> list[str]:
    known = set(
        session.scalars(select(Purpose.code).where(Purpose.code.in_(taxonomy.lineage(code))))
    )
    if code not in known:
        return []
    return [c for c in taxonomy.lineage(code) if c in known]


def build_input(
    session: Session,
    *,
    principal: Principal,
    agreement_id: str,
    purpose: str,
    fields: list[str],
    pseudonyms: list[str] | None,
    cohort_size: int | None,
    now: datetime,
) -> tuple[dict[str, Any], AgreementVersion | None, EthicsReview | None]:
    version = version_for_decision(session, agreement_id)
    review = reviews.latest_review(session, version.id) if version is not None else None
    consents_by_subject: dict[str, list[dict[str, Any]]] = {}
    if version is not None and pseudonyms:
        consents_by_subject = consents.for_decision(
            session, pseudonyms, agreements.party_orgs(version)
        )
    document = {
        "now_ns": to_ns(now),
        "principal": {
            "subject": principal.subject,
            "role": principal.role.value,
            "organisation": principal.organisation_id,
        },
        "request": {
            "kind": "subjects" if pseudonyms is not None else "aggregate",
            "purpose": purpose,
            "fields": fields,
            "subjects": pseudonyms or [],
            "cohort_size": cohort_size,
        },
        "purpose_lineage": purpose_lineage(session, purpose),
        "catalogue": registry.catalogue(session, fields),
        "sensitive_categories": registry.sensitive_categories(session),
        "agreement": agreements.agreement_document(version) if version is not None else None,
        "ethics_review": reviews.review_document(review),
        "consents": consents_by_subject,
    }
    return document, version, review
