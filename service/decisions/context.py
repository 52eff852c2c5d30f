"""Builds the policy input document: everything the policy needs, nothing it must fetch.

Read with a handful of Core queries in one read-only transaction: the agreement version
decisions are made under, its parties, its ethics review in force and the subjects'
consents; the taxonomy comes from the process's snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from service.agreements import service as agreements
from service.agreements.models import Agreement, AgreementParty, AgreementVersion
from service.consents import service as consents
from service.core.clock import iso, to_ns
from service.core.identity import Principal
from service.registry.snapshot import TaxonomySnapshot
from service.reviews.models import EthicsReview

_VERSION_COLUMNS = (
    AgreementVersion.id,
    AgreementVersion.agreement_id,
    AgreementVersion.version,
    AgreementVersion.status,
    AgreementVersion.valid_from,
    AgreementVersion.valid_until,
    AgreementVersion.legal_basis,
    AgreementVersion.consent_required,
    AgreementVersion.retention_days,
    AgreementVersion.minimisation_mode,
    AgreementVersion.min_cohort,
    AgreementVersion.pseudonymisation_required,
    AgreementVersion.jurisdiction,
    AgreementVersion.purposes,
)


@dataclass(frozen=True, slots=True)
class DecisionContext:
    document: dict[str, Any]
    agreement_version: int | None
    review_audit: dict[str, Any] | None  # the review in force, as the audit log records it


# Built once: on the hot path, statements are executed on the connection (Core), which
# skips rebuilding them and the ORM's execution layers.
_VERSION = (
    select(*_VERSION_COLUMNS)
    .join(Agreement, Agreement.id == AgreementVersion.agreement_id)
    .where(
        Agreement.id == bindparam("agreement_id"),
        AgreementVersion.version
        == func.coalesce(Agreement.in_force_version, Agreement.latest_version),
    )
)
_PARTIES = select(AgreementParty.organisation_id, AgreementParty.role).where(
    AgreementParty.version_id == bindparam("version_id")
)
_REVIEW = (
    select(
        EthicsReview.id,
        EthicsReview.outcome,
        EthicsReview.conditions,
        EthicsReview.reference,
        EthicsReview.valid_from,
        EthicsReview.valid_until,
    )
    .where(EthicsReview.version_id == bindparam("version_id"))
    .order_by(EthicsReview.ordinal.desc())
    .limit(1)
)


def build_context(
    session: Session,
    snapshot: TaxonomySnapshot,
    *,
    principal: Principal,
    agreement_id: str,
    purpose: str,
    fields: list[str],
    pseudonyms: list[str] | None,
    cohort_size: int | None,
    now: datetime,
) -> DecisionContext:
    agreement: dict[str, Any] | None = None
    review_doc = review_audit = None
    consents_by_subject: dict[str, list[dict[str, Any]]] = {}
    connection = session.connection()
    version = connection.execute(_VERSION, {"agreement_id": agreement_id}).one_or_none()
    if version is not None:
        parties = connection.execute(_PARTIES, {"version_id": version.id}).all()
        agreement = agreements.policy_document(
            version,
            sorted(o for o, role in parties if role == "provider"),
            sorted(o for o, role in parties if role == "recipient"),
        )
        review = connection.execute(_REVIEW, {"version_id": version.id}).one_or_none()
        if review is not None:
            review_doc = {
                "id": review.id,
                "outcome": review.outcome,
                "conditions": list(review.conditions),
                "reference": review.reference,
                "valid_from_ns": to_ns(review.valid_from),
                "valid_until_ns": to_ns(review.valid_until),
            }
            review_audit = {
                **{k: v for k, v in review_doc.items() if not k.endswith("_ns")},
                "valid_from": iso(review.valid_from),
                "valid_until": iso(review.valid_until),
            }
        if pseudonyms:
            consents_by_subject = consents.for_decision(
                connection, pseudonyms, {o for o, _ in parties}
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
        "purpose_lineage": snapshot.purpose_lineage(purpose),
        "catalogue": snapshot.catalogue(fields),
        "sensitive_categories": list(snapshot.sensitive_categories),
        "agreement": agreement,
        "ethics_review": review_doc,
        "consents": consents_by_subject,
    }
    return DecisionContext(document, version.version if version else None, review_audit)
