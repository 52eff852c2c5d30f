"""Builds policy input documents: everything the policy needs, nothing it must fetch.

Requests decided together are read together, with Core queries in one read-only
transaction: per agreement, the version decisions are made under with its parties and its
latest ethics review (one row per party), then its requests' subjects' consents in one
query; the taxonomy comes from the process's snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select
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


@dataclass(frozen=True, slots=True)
class Wanted:
    """One request's part of a context read: who asks, under which agreement, for what."""

    principal: Principal
    agreement_id: str
    purpose: str
    fields: list[str]
    pseudonyms: list[str] | None
    cohort_size: int | None


@dataclass(frozen=True, slots=True)
class _AgreementRead:
    document: dict[str, Any]
    version: int
    parties: frozenset[str]
    review_doc: dict[str, Any] | None
    review_audit: dict[str, Any] | None


def _read_agreement(connection: Connection, agreement_id: str) -> _AgreementRead | None:
    rows = connection.execute(_AGREEMENT, {"agreement_id": agreement_id}).all()
    if not rows:
        return None
    version = rows[0]
    parties = [(row.party, row.party_role) for row in rows if row.party is not None]
    review_doc = review_audit = None
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
    document = agreements.policy_document(
        version,
        sorted(o for o, role in parties if role == "provider"),
        sorted(o for o, role in parties if role == "recipient"),
    )
    return _AgreementRead(
        document, version.version, frozenset(o for o, _ in parties), review_doc, review_audit
    )


def build_contexts(
    session: Session, snapshot: TaxonomySnapshot, wanted: list[Wanted], now: datetime
) -> list[DecisionContext]:
    """The policy inputs of several requests decided at `now`, read together: each agreement
    once, and each agreement's consents in one query for all its requests' subjects."""
    connection = session.connection()
    read: dict[str, _AgreementRead | None] = {}
    for want in wanted:
        if want.agreement_id not in read:
            read[want.agreement_id] = _read_agreement(connection, want.agreement_id)
    held: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for agreement_id, agreement in read.items():
        subjects = [p for w in wanted if w.agreement_id == agreement_id for p in w.pseudonyms or ()]
        if agreement is not None and subjects:
            held[agreement_id] = consents.for_decision(connection, subjects, agreement.parties)
    now_ns = to_ns(now)
    sensitive = list(snapshot.sensitive_categories)
    contexts = []
    for want in wanted:
        agreement = read[want.agreement_id]
        pseudonyms = want.pseudonyms
        by_subject = held.get(want.agreement_id, {})
        document = {
            "now_ns": now_ns,
            "principal": {
                "subject": want.principal.subject,
                "role": want.principal.role.value,
                "organisation": want.principal.organisation_id,
            },
            "request": {
                "kind": "subjects" if pseudonyms is not None else "aggregate",
                "purpose": want.purpose,
                "fields": want.fields,
                "subjects": pseudonyms or [],
                "cohort_size": want.cohort_size,
            },
            "purpose_lineage": snapshot.purpose_lineage(want.purpose),
            "catalogue": snapshot.catalogue(want.fields),
            "sensitive_categories": sensitive,
            "agreement": agreement.document if agreement else None,
            "ethics_review": agreement.review_doc if agreement else None,
            "consents": {p: by_subject[p] for p in pseudonyms or () if p in by_subject},
        }
        contexts.append(
            DecisionContext(
                document,
                agreement.version if agreement else None,
                agreement.review_audit if agreement else None,
            )
        )
    return contexts
