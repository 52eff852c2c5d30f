"""Builds policy input documents: everything the policy needs, nothing it must fetch.

Requests decided together are read together, with Core queries in one read-only
transaction: per agreement, the version decisions are made under with its parties and its
latest ethics review (one row per party), and its requests' subjects' consents held by its
providers in one query (on PostgreSQL both sent at once, one round trip); the taxonomy
comes from the process's snapshot.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Dialect, and_, bindparam, func, select
from sqlalchemy.engine import Compiled
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.expression import ClauseElement

from service.agreements import service as agreements
from service.agreements.models import Agreement, AgreementParty, AgreementVersion
from service.consents import service as consents
from service.core.clock import iso, to_ns
from service.core.database import driver_cursor
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
    # The organisations whose consents count: the providers, which disclose the data. A
    # recipient's own consent records never do, or it could grant itself access.
    providers: frozenset[str]
    review_doc: dict[str, Any] | None
    review_audit: dict[str, Any] | None


def _agreement_from_rows(rows: Sequence[Any]) -> _AgreementRead | None:
    """An agreement as _AGREEMENT's rows give it (none: no such agreement)."""
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
    providers = sorted(o for o, role in parties if role == "provider")
    document = agreements.policy_document(
        version, providers, sorted(o for o, role in parties if role == "recipient")
    )
    return _AgreementRead(document, version.version, frozenset(providers), review_doc, review_audit)


def _read(
    connection: Connection, agreement_id: str, subjects: list[str]
) -> tuple[_AgreementRead | None, dict[str, list[dict[str, Any]]]]:
    """An agreement, and the consents its providers hold of these subjects. On PostgreSQL the
    consents are read with the agreement, so also for an agreement that turns out not to
    exist (a request the policy then denies; it costs what the same request under a real
    agreement costs)."""
    agreement_rows: Sequence[Any]
    consent_rows = None
    if subjects and connection.dialect.name == "postgresql":
        agreement_rows, consent_rows = _read_together(connection, agreement_id, subjects)
    else:
        agreement_rows = connection.execute(_AGREEMENT, {"agreement_id": agreement_id}).all()
    agreement = _agreement_from_rows(agreement_rows)
    if agreement is None or not subjects:
        return agreement, {}
    if consent_rows is None:  # read only now, for an agreement that exists
        return agreement, consents.for_decision(connection, subjects, agreement.providers)
    return agreement, consents.decision_consents(consent_rows, agreement.providers)


def _read_together(
    connection: Connection, agreement_id: str, subjects: list[str]
) -> tuple[list[Any], list[Any]]:
    """PostgreSQL: the rows of the agreement's read and of its subjects' consents, both sent
    before either is waited for (psycopg's pipeline mode): one round trip instead of two,
    which the decision thread otherwise spends most of its time waiting on. The rows are
    the driver's, as the engine gets them (psycopg's type loaders, JSON by orjson); the
    agreement's rows have their columns' names, as the engine's have."""
    agreement_sql, agreement_parameters = _driver_statement(
        connection, _AGREEMENT, {"agreement_id": agreement_id}
    )
    consent_sql, consent_parameters = _driver_statement(
        connection, *consents.decision_query("postgresql", subjects)
    )
    fairy: Any = connection.connection
    # Either statement may be the one that fails: the error names both.
    statements = f"{agreement_sql};\n{consent_sql}"
    with (
        driver_cursor(connection, statements) as agreement_cursor,
        contextlib.closing(fairy.cursor()) as consent_cursor,
    ):
        agreement_cursor.row_factory = namedtuple_row
        with fairy.dbapi_connection.pipeline():
            agreement_cursor.execute(agreement_sql, agreement_parameters)
            consent_cursor.execute(consent_sql, consent_parameters)
        return agreement_cursor.fetchall(), consent_cursor.fetchall()


@lru_cache(maxsize=16)  # two statements per engine's dialect
def _compiled(statement: ClauseElement, dialect: Dialect) -> Compiled:
    return statement.compile(dialect=dialect)


def _driver_statement(
    connection: Connection, statement: ClauseElement, parameters: Mapping[str, Any]
) -> tuple[str, Mapping[str, Any] | None]:
    """A statement's text and parameters as the engine would hand them to the driver (the
    statements here bind only strings, which no bind processor changes)."""
    compiled = _compiled(statement, connection.dialect)
    return compiled.string, compiled.construct_params(parameters)


def build_contexts(
    session: Session, snapshot: TaxonomySnapshot, wanted: list[Wanted], now: datetime
) -> list[DecisionContext]:
    """The policy inputs of several requests decided at `now`, read together: each agreement
    once, and each agreement's consents in one query for all its requests' subjects."""
    connection = session.connection()
    subjects: dict[str, list[str]] = {}
    for want in wanted:
        subjects.setdefault(want.agreement_id, []).extend(want.pseudonyms or ())
    read: dict[str, _AgreementRead | None] = {}
    held: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for agreement_id, of_agreement in subjects.items():
        read[agreement_id], held[agreement_id] = _read(connection, agreement_id, of_agreement)
    now_ns = to_ns(now)
    sensitive = list(snapshot.sensitive_categories)
    contexts = []
    for want in wanted:
        agreement = read[want.agreement_id]
        pseudonyms = want.pseudonyms
        by_subject = held[want.agreement_id]
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
