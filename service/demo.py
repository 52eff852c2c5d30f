"""Demo data: organisations from several sectors, an agreement in each lifecycle state, consents."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.agreements import schemas as agreement_schemas
from service.agreements import service as agreements
from service.app import SYSTEM, build_runtime
from service.consents import schemas as consent_schemas
from service.consents import service as consents
from service.consents.models import Consent
from service.core.context import Runtime
from service.core.database import transaction
from service.core.deps import Actor
from service.core.identity import Principal, Role
from service.core.settings import Settings
from service.registry import schemas as registry_schemas
from service.registry import service as registry
from service.registry.models import Organisation
from service.reviews import schemas as review_schemas
from service.reviews import service as reviews

ORGANISATIONS = [
    ("city-council", "City Council", "government"),
    ("st-marys-health", "St Mary's Health Trust", "health"),
    ("northside-school", "Northside Academy", "education"),
    ("civic-data-lab", "Civic Data Lab, University of Eastbridge", "academia"),
    ("youth-futures", "Youth Futures Charity", "civil_society"),
    ("riverside-community", "Riverside Community Association", "community"),
    ("medtech-analytics", "MedTech Analytics Ltd", "industry"),
    ("regional-ethics-board", "Regional Research Ethics Board", "academia"),
]
DAY = timedelta(days=1)


def steward(org: str) -> Actor:
    return Actor(Principal(f"steward@{org}", Role.STEWARD, org), None)


def _terms(
    title: str,
    providers: list[str],
    recipients: list[str],
    start: datetime,
    days: int,
    purposes: list[dict[str, Any]],
    **extra: Any,
) -> agreement_schemas.AgreementCreate:
    return agreement_schemas.AgreementCreate.model_validate(
        {
            "title": title,
            "providers": providers,
            "recipients": recipients,
            "legal_basis": extra.pop("legal_basis", "consent"),
            "retention_days": 365,
            "valid_from": start,
            "valid_until": start + days * DAY,
            "jurisdiction": "UK",
            "purposes": purposes,
            **extra,
        }
    )


def _approve_all(
    session: Session, agreement_id: str, version: int, orgs: list[str], now: datetime
) -> None:
    for org in orgs:
        agreements.decide(
            session,
            steward(org),
            agreement_id,
            version,
            approve=True,
            comment="approved for demo",
            now=now,
        )


def _lifecycle(
    runtime: Runtime,
    session: Session,
    terms: agreement_schemas.AgreementCreate,
    until: str,
    now: datetime,
    reviewed: bool = False,
) -> str:
    """Create an agreement and walk it to the `until` state."""
    owner = terms.recipients[0]
    agreement = agreements.create(session, steward(owner), terms, now)
    aid, parties = agreement.id, sorted(set(terms.providers) | set(terms.recipients))
    if until == "draft":
        return aid
    agreements.submit(session, steward(owner), runtime.policy, aid, 1, now)
    if until == "pending_approval":
        return aid
    if until == "rejected":
        agreements.decide(
            session,
            steward(terms.providers[0]),
            aid,
            1,
            approve=False,
            comment="the retention period is too long",
            now=now,
        )
        return aid
    if reviewed:
        reviewer = Actor(
            Principal("reviewer@ethics", Role.ETHICS_REVIEWER, "regional-ethics-board"), None
        )
        version = agreements.get_version(session, aid, 1)
        reviews.record_review(
            session,
            reviewer,
            agreement_id=aid,
            version=1,
            version_id=version.id,
            data=review_schemas.ReviewCreate(
                outcome=review_schemas.ReviewOutcome.APPROVED_WITH_CONDITIONS,
                conditions=["publish only aggregate findings", "delete linkage keys after study"],
                reference="REB-2026-042",
                valid_from=now - DAY,
                valid_until=now + 730 * DAY,
            ),
            now=now,
        )
    _approve_all(session, aid, 1, parties, now)
    if until == "approved":
        return aid
    agreements.activate(session, steward(owner), aid, 1, now)
    if until in ("suspended", "terminated"):
        name = "suspend" if until == "suspended" else "terminate"
        agreements.move(session, steward(owner), aid, name, f"demo: {until}", now)
    return aid


def seed(settings: Settings) -> dict[str, Any]:
    """Seed an empty database; a database with organisations is left alone."""
    runtime = build_runtime(settings)
    now = runtime.clock.now()
    admin = Actor(SYSTEM, None)
    summary: dict[str, Any] = {"agreements": {}, "consents": 0}
    for session in transaction(runtime.sessions):
        registry.ensure_operator(session, settings.operator_org, now)
        registry.install_default_taxonomy(session)
        if (session.scalar(select(func.count()).select_from(Organisation)) or 0) > 1:
            return {"skipped": "the database already has organisations"}
        for org_id, name, sector in ORGANISATIONS:
            registry.create_organisation(
                session,
                admin,
                registry_schemas.OrganisationCreate(id=org_id, name=name, sector=sector),
                now,
            )
        health_research = [
            {
                "purpose": "research.public_health",
                "fields": ["diagnosis_code", "date_of_birth", "postcode"],
            }
        ]
        education = [
            {
                "purpose": "service_delivery.education_support",
                "fields": ["attendance_rate", "exam_results", "email"],
            }
        ]
        plans = {
            "active": (
                _terms(
                    "Public health research extract",
                    ["st-marys-health"],
                    ["civic-data-lab"],
                    now - DAY,
                    730,
                    health_research,
                    minimisation={"mode": "trim", "min_cohort": 10},
                ),
                True,
            ),
            "active_public_task": (
                _terms(
                    "Attendance support",
                    ["northside-school"],
                    ["city-council"],
                    now - DAY,
                    365,
                    education,
                    legal_basis="public_task",
                ),
                False,
            ),
            "draft": (
                _terms(
                    "Youth services evaluation",
                    ["youth-futures"],
                    ["civic-data-lab"],
                    now,
                    365,
                    education,
                ),
                False,
            ),
            "pending_approval": (
                _terms(
                    "Care coordination",
                    ["st-marys-health"],
                    ["city-council"],
                    now,
                    365,
                    [
                        {
                            "purpose": "service_delivery.care_coordination",
                            "fields": ["full_name", "phone", "appointment_dates"],
                        }
                    ],
                ),
                False,
            ),
            "approved": (
                _terms(
                    "Community health survey",
                    ["riverside-community"],
                    ["civic-data-lab"],
                    now + 30 * DAY,
                    365,
                    [{"purpose": "statistics", "fields": ["postcode"]}],
                    legal_basis="legitimate_interests",
                ),
                False,
            ),
            "suspended": (
                _terms(
                    "Medication analytics",
                    ["st-marys-health"],
                    ["medtech-analytics"],
                    now - DAY,
                    365,
                    [{"purpose": "research", "fields": ["medication_list"]}],
                ),
                True,
            ),
            "terminated": (
                _terms(
                    "Benefits outreach",
                    ["city-council"],
                    ["youth-futures"],
                    now - DAY,
                    365,
                    [
                        {
                            "purpose": "service_delivery.benefits",
                            "fields": ["benefits_status", "email"],
                        }
                    ],
                    legal_basis="public_task",
                ),
                False,
            ),
            "rejected": (
                _terms(
                    "Marketing list",
                    ["riverside-community"],
                    ["medtech-analytics"],
                    now,
                    365,
                    [{"purpose": "research.social", "fields": ["email"]}],
                ),
                False,
            ),
        }
        for label, (terms, reviewed) in plans.items():
            until = "active" if label.startswith("active") else label
            summary["agreements"][label] = _lifecycle(runtime, session, terms, until, now, reviewed)
        # An agreement that ran its course: approved and activated a year ago, then expired.
        past = now - 400 * DAY
        expired_terms = _terms(
            "Pilot attendance study",
            ["northside-school"],
            ["civic-data-lab"],
            past,
            30,
            education,
            legal_basis="public_task",
        )
        summary["agreements"]["expired"] = _lifecycle(
            runtime, session, expired_terms, "active", past
        )
        agreements.sweep(session, admin, now)
        # Consents collected by the hospital for the research agreement.
        hospital = Actor(
            Principal("partner@st-marys-health", Role.PARTNER, "st-marys-health"), None
        )
        for n in range(1, 21):
            consents.record(
                session,
                hospital,
                runtime.pseudonymise,
                consent_schemas.ConsentCreate.model_validate(
                    {
                        "subject_id": f"patient-{n:04d}",
                        "purposes": ["research"],
                        "categories": ["health", "identity", "contact.address"],
                        "evidence": {
                            "method": "web_form",
                            "notice_version": "2026-03",
                            "collected_at": now - DAY,
                        },
                    }
                ),
                now,
            )
            summary["consents"] += 1
        withdrawn = session.scalars(
            select(Consent).where(Consent.subject_pseudonym == runtime.pseudonymise("patient-0020"))
        ).one()
        consents.withdraw(session, hospital, withdrawn.id, "subject asked", now)
    runtime.db.dispose()
    return summary
