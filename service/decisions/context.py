"""Builds the policy input document: everything the policy needs, nothing it must fetch.

Read with two Core queries in one read-only transaction: the agreement version decisions
are made under with its parties and its latest ethics review (one row per party), then the
subjects' consents; the taxonomy comes from the process's snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.orm import Session, aliased

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
# skips rebuilding them and the ORM's execution layers. One round trip for the agreement:
# the version, one row per party, and the version's latest review on every row.
_EARLIER = aliased(EthicsReview)
_LATEST_ORDINAL = (
    select(func.max(_EARLIER.ordinal))
    .where(_EARLIER.version_id == AgreementVersion.id)
    .scalar_subquery()
)
_AGREEMENT = (
    select(
        *_VERSION_COLUMNS,
        AgreementParty.organisation_id.label("party"),
        AgreementParty.role.label("party_role"),
        EthicsReview.id.label("review_id"),
        EthicsReview.outcome.label("review_outcome"),
        EthicsReview.conditions.label("review_conditions"),
        EthicsReview.reference.label("review_reference"),
        EthicsReview.valid_from.label("review_from"),
        EthicsReview.valid_until.label("review_until"),
    )
    .join(Agreement, Agreement.id == AgreementVersion.agreement_id)
    .outerjoin(AgreementParty, AgreementParty.version_id == AgreementVersion.id)
    .outerjoin(
        EthicsReview,
        and_(
            EthicsReview.version_id == AgreementVersion.id,
            EthicsReview.ordinal == _LATEST_ORDINAL,
        ),
    )
    .where(
        Agreement.id == bindparam("agreement_id"),
        AgreementVersion.version
        == func.coalesce(Agreement.in_force_version, Agreement.latest_version),
    )
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
    rows = connection.execute(_AGREEMENT, {"agreement_id": agreement_id}).all()
    version = rows[0] if rows else None
    if version is not None:
        parties = [(row.party, row.party_role) for row in rows if row.party is not None]
        agreement = agreements.policy_document(
            version,
            sorted(o for o, role in parties if role == "provider"),
            sorted(o for o, role in parties if role == "recipient"),
        )
        if version.review_id is not None:
            review_doc = {
                "id": version.review_id,
                "outcome": version.review_outcome,
                "conditions": list(version.review_conditions),
                "reference": version.review_reference,
                "valid_from_ns": to_ns(version.review_from),
                "valid_until_ns": to_ns(version.review_until),
            }
            review_audit = {
                **{k: v for k, v in review_doc.items() if not k.endswith("_ns")},
                "valid_from": iso(version.review_from),
                "valid_until": iso(version.review_until),
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
