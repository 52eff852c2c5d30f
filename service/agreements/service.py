"""Agreement lifecycle: drafting, joint approval, activation, suspension, amendment.

    draft → pending_approval → approved → active ⇄ suspended → terminated | expired
                 └→ rejected                 (an activated amendment supersedes the old)

Every transition locks the version row, checks who may make it, and appends its audit
event in the same transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.agreements.models import Agreement, AgreementApproval, AgreementParty, AgreementVersion
from service.agreements.schemas import (
    AgreementAmend,
    AgreementCreate,
    AgreementStatus,
    AgreementTerms,
)
from service.audit import log as audit
from service.audit.actions import AuditAction
from service.core.clock import as_utc, to_ns
from service.core.deps import Actor
from service.core.errors import Forbidden, InvalidRequest, InvalidTransition, NotFound
from service.core.identity import Principal, Role
from service.decisions.engines import PolicyError
from service.decisions.engines.base import REVIEW_ENTRYPOINT, PolicyEngine
from service.registry import service as registry
from service.registry.models import DataField, Organisation, Purpose
from service.reviews import service as reviews

S = AgreementStatus
OVERSIGHT_ROLES = {Role.AUDITOR, Role.ADMIN, Role.ETHICS_REVIEWER}


def providers(version: AgreementVersion) -> list[str]:
    return sorted(p.organisation_id for p in version.parties if p.role == "provider")


def recipients(version: AgreementVersion) -> list[str]:
    return sorted(p.organisation_id for p in version.parties if p.role == "recipient")


def party_orgs(version: AgreementVersion) -> set[str]:
    return {p.organisation_id for p in version.parties}


def agreement_document(version: AgreementVersion) -> dict[str, Any]:
    """The agreement version as policies see it."""
    return policy_document(version, providers(version), recipients(version))


def policy_document(version: Any, providers: list[str], recipients: list[str]) -> dict[str, Any]:
    """The policy input's agreement, from a version (ORM object or row) and its parties."""
    return {
        "id": version.agreement_id,
        "version": version.version,
        "status": version.status,
        "valid_from_ns": to_ns(version.valid_from),
        "valid_until_ns": to_ns(version.valid_until),
        "providers": providers,
        "recipients": recipients,
        "legal_basis": version.legal_basis,
        "consent_required": version.consent_required,
        "retention_days": version.retention_days,
        "minimisation": {"mode": version.minimisation_mode, "min_cohort": version.min_cohort},
        "pseudonymisation_required": version.pseudonymisation_required,
        "jurisdiction": version.jurisdiction,
        "purposes": version.purposes,
    }


def _validate_terms(session: Session, terms: AgreementTerms) -> None:
    orgs = set(terms.providers) | set(terms.recipients)
    known = set(
        session.scalars(
            select(Organisation.id).where(Organisation.id.in_(orgs), Organisation.enabled)
        )
    )
    if missing := sorted(orgs - known):
        raise InvalidRequest(f"unknown or disabled organisations: {', '.join(missing)}")
    purposes = {p.purpose for p in terms.purposes}
    known_purposes = set(session.scalars(select(Purpose.code).where(Purpose.code.in_(purposes))))
    if missing := sorted(purposes - known_purposes):
        raise InvalidRequest(f"unknown purposes: {', '.join(missing)}")
    fields = {f for p in terms.purposes for f in p.fields}
    known_fields = set(session.scalars(select(DataField.name).where(DataField.name.in_(fields))))
    if missing := sorted(fields - known_fields):
        raise InvalidRequest(f"unknown data fields: {', '.join(missing)}")


def _apply_terms(version: AgreementVersion, terms: AgreementTerms) -> None:
    version.title = terms.title
    version.description = terms.description
    version.legal_basis = terms.legal_basis.value
    version.consent_required = bool(terms.consent_required)
    version.retention_days = terms.retention_days
    version.valid_from = as_utc(terms.valid_from)
    version.valid_until = as_utc(terms.valid_until)
    version.minimisation_mode = terms.minimisation.mode.value
    version.min_cohort = terms.minimisation.min_cohort
    version.pseudonymisation_required = terms.pseudonymisation_required
    version.jurisdiction = terms.jurisdiction
    version.purposes = [p.model_dump() for p in terms.purposes]
    version.parties = [
        *(AgreementParty(organisation_id=o, role="provider") for o in sorted(set(terms.providers))),
        *(
            AgreementParty(organisation_id=o, role="recipient")
            for o in sorted(set(terms.recipients))
        ),
    ]


def terms_of(version: AgreementVersion) -> dict[str, Any]:
    return {
        "title": version.title,
        "description": version.description,
        "providers": providers(version),
        "recipients": recipients(version),
        "legal_basis": version.legal_basis,
        "consent_required": version.consent_required,
        "retention_days": version.retention_days,
        "valid_from": as_utc(version.valid_from),
        "valid_until": as_utc(version.valid_until),
        "minimisation": {"mode": version.minimisation_mode, "min_cohort": version.min_cohort},
        "pseudonymisation_required": version.pseudonymisation_required,
        "jurisdiction": version.jurisdiction,
        "purposes": version.purposes,
    }


def _event(
    session: Session,
    actor: Actor,
    action: AuditAction,
    version: AgreementVersion,
    now: datetime,
    **details: Any,
) -> None:
    audit.append(
        session,
        actor,
        audit.EventRecord(
            action,
            "agreement",
            version.agreement_id,
            agreement_id=version.agreement_id,
            agreement_version=version.version,
            details={"status": version.status, **details},
        ),
        now,
    )


def create(session: Session, actor: Actor, data: AgreementCreate, now: datetime) -> Agreement:
    org = actor.principal.organisation_id
    if org not in set(data.providers) | set(data.recipients):
        raise Forbidden("a steward can only draft agreements its organisation is party to")
    _validate_terms(session, data)
    agreement = Agreement(
        id=str(uuid.uuid4()), created_by_org=org, created_at=now, latest_version=1
    )
    session.add(agreement)
    version = AgreementVersion(
        id=str(uuid.uuid4()),
        agreement_id=agreement.id,
        version=1,
        status=S.DRAFT.value,
        created_by=actor.principal.subject,
        created_at=now,
        updated_at=now,
    )
    _apply_terms(version, data)
    session.add(version)
    session.flush()
    _event(session, actor, AuditAction.AGREEMENT_CREATED, version, now)
    return agreement


def can_see(principal: Principal, version: AgreementVersion) -> bool:
    return principal.role in OVERSIGHT_ROLES or principal.organisation_id in party_orgs(version)


def get_agreement(session: Session, principal: Principal, agreement_id: str) -> Agreement:
    """The agreement if the caller may see it; 404 otherwise (existence is not revealed)."""
    agreement = session.get(Agreement, agreement_id)
    if agreement is not None:
        latest = get_version(session, agreement_id, agreement.latest_version)
        in_force = (
            get_version(session, agreement_id, agreement.in_force_version)
            if agreement.in_force_version
            else None
        )
        if can_see(principal, latest) or (in_force is not None and can_see(principal, in_force)):
            return agreement
    raise NotFound(f"agreement {agreement_id} not found")


def get_version(
    session: Session, agreement_id: str, number: int, *, lock: bool = False
) -> AgreementVersion:
    query = select(AgreementVersion).where(
        AgreementVersion.agreement_id == agreement_id, AgreementVersion.version == number
    )
    if lock:
        query = query.with_for_update()
    version = session.scalar(query)
    if version is None:
        raise NotFound(f"agreement {agreement_id} has no version {number}")
    return version


def versions_of(session: Session, agreement_id: str) -> list[AgreementVersion]:
    return list(
        session.scalars(
            select(AgreementVersion)
            .where(AgreementVersion.agreement_id == agreement_id)
            .order_by(AgreementVersion.version)
        )
    )


def _steward_version(
    session: Session, actor: Actor, agreement_id: str, number: int, *, departing: bool = False
) -> AgreementVersion:
    """Lock a version for a steward of one of its parties (or, with `departing`, of a
    party it drops from the version in force)."""
    get_agreement(session, actor.principal, agreement_id)
    version = get_version(session, agreement_id, number, lock=True)
    org = actor.principal.organisation_id
    if org not in party_orgs(version) and not (departing and org in version.departing):
        raise Forbidden("only stewards of a party organisation may change this agreement")
    return version


def _require(version: AgreementVersion, *allowed: S, action: str) -> None:
    if version.status not in {s.value for s in allowed}:
        raise InvalidTransition(
            f"cannot {action} version {version.version}: it is {version.status}",
            current_status=version.status,
        )


def _merged_terms(version: AgreementVersion, changes: AgreementAmend) -> AgreementTerms:
    """The version's terms with the changes applied, checked as a whole."""
    try:
        return AgreementTerms.model_validate(
            {**terms_of(version), **changes.model_dump(exclude_unset=True)}
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'terms'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidRequest(f"the amended terms are invalid: {problems}") from None


def edit_draft(
    session: Session,
    actor: Actor,
    agreement_id: str,
    number: int,
    data: AgreementAmend,
    now: datetime,
) -> AgreementVersion:
    version = _steward_version(session, actor, agreement_id, number)
    _require(version, S.DRAFT, action="edit")
    terms = _merged_terms(version, data)
    if actor.principal.organisation_id not in set(terms.providers) | set(terms.recipients):
        raise Forbidden("a steward cannot remove its own organisation from the parties")
    _validate_terms(session, terms)
    _apply_terms(version, terms)
    version.updated_at = now
    session.flush()
    _event(session, actor, AuditAction.AGREEMENT_UPDATED, version, now)
    return version


def review_required(
    session: Session, policy: PolicyEngine, version: AgreementVersion
) -> tuple[bool, list[str]]:
    """Asks the policy bundle whether this version covers sensitive data."""
    fields = {f for p in version.purposes for f in p["fields"]}
    result = policy.evaluate(
        REVIEW_ENTRYPOINT,
        {
            "agreement": agreement_document(version),
            "catalogue": registry.catalogue(session, fields),
            "sensitive_categories": registry.sensitive_categories(session),
        },
    )
    if not isinstance(result, dict) or not isinstance(result.get("required"), bool):
        raise PolicyError("review policy returned a malformed result")
    return result["required"], list(result.get("sensitive_fields", []))


def submit(
    session: Session,
    actor: Actor,
    policy: PolicyEngine,
    agreement_id: str,
    number: int,
    now: datetime,
) -> AgreementVersion:
    version = _steward_version(session, actor, agreement_id, number)
    _require(version, S.DRAFT, action="submit")
    required, sensitive = review_required(session, policy, version)
    version.review_required = required
    in_force = session.get(Agreement, agreement_id)
    if in_force is not None and in_force.in_force_version is not None:
        current = get_version(session, agreement_id, in_force.in_force_version)
        version.departing = sorted(party_orgs(current) - party_orgs(version))
    version.status = S.PENDING_APPROVAL.value
    version.submitted_at = version.updated_at = now
    session.flush()
    _event(
        session,
        actor,
        AuditAction.AGREEMENT_SUBMITTED,
        version,
        now,
        review_required=required,
        sensitive_fields=sensitive,
        policy_revision=policy.revision,
    )
    return version


def awaiting(version: AgreementVersion) -> list[str]:
    """The parties, and the parties of the version in force it drops, yet to decide."""
    decided = {a.organisation_id for a in version.approvals}
    return sorted((party_orgs(version) | set(version.departing)) - decided)


def maybe_approve(session: Session, actor: Actor, version: AgreementVersion, now: datetime) -> None:
    """Approve the version once every party approved and any needed review approves."""
    if version.status != S.PENDING_APPROVAL.value or awaiting(version):
        return
    if any(a.decision != "approved" for a in version.approvals):
        return
    if version.review_required and not reviews.approves_at(
        reviews.latest_review(session, version.id), now
    ):
        return
    version.status = S.APPROVED.value
    version.approved_at = version.updated_at = now
    session.flush()
    _event(session, actor, AuditAction.AGREEMENT_APPROVED, version, now)


def decide(
    session: Session,
    actor: Actor,
    agreement_id: str,
    number: int,
    *,
    approve: bool,
    comment: str,
    now: datetime,
) -> AgreementVersion:
    """One party's approval or rejection, by a steward of that party only (or of a party
    of the version in force that the amendment drops)."""
    version = _steward_version(session, actor, agreement_id, number, departing=True)
    _require(version, S.PENDING_APPROVAL, action="approve or reject")
    org = actor.principal.organisation_id
    if org not in awaiting(version):
        raise InvalidTransition(f"organisation {org} has already decided on this version")
    approval = AgreementApproval(
        id=str(uuid.uuid4()),
        version_id=version.id,
        organisation_id=org,
        decision="approved" if approve else "rejected",
        comment=comment,
        actor_subject=actor.principal.subject,
        decided_at=now,
    )
    session.add(approval)
    version.approvals.append(approval)
    version.updated_at = now
    session.flush()
    action = (
        AuditAction.AGREEMENT_APPROVED_BY_PARTY
        if approve
        else AuditAction.AGREEMENT_REJECTED_BY_PARTY
    )
    _event(session, actor, action, version, now, organisation=org, comment=comment)
    if approve:
        maybe_approve(session, actor, version, now)
    else:
        version.status = S.REJECTED.value
        version.status_reason = comment
        version.ended_at = now
        session.flush()
        _event(session, actor, AuditAction.AGREEMENT_REJECTED, version, now, organisation=org)
    return version


def activate(
    session: Session, actor: Actor, agreement_id: str, number: int, now: datetime
) -> AgreementVersion:
    version = _steward_version(session, actor, agreement_id, number)
    return activate_version(session, actor, version, now)


def activate_version(
    session: Session, actor: Actor, version: AgreementVersion, now: datetime
) -> AgreementVersion:
    _require(version, S.APPROVED, action="activate")
    if not as_utc(version.valid_from) <= now < as_utc(version.valid_until):
        raise InvalidTransition("the version is outside its validity window")
    agreement = session.get(Agreement, version.agreement_id, with_for_update=True)
    assert agreement is not None
    if agreement.in_force_version is not None:
        previous = get_version(session, agreement.id, agreement.in_force_version, lock=True)
        org = actor.principal.organisation_id
        if previous.status == S.SUSPENDED.value and previous.suspended_by not in (None, org):
            # Superseding the suspended version would lift the suspension: its party's call.
            raise InvalidTransition(
                f"the version in force is suspended by {previous.suspended_by}, "
                "which alone may activate another"
            )
        if previous.status in (S.ACTIVE.value, S.SUSPENDED.value):
            previous.status = S.SUPERSEDED.value
            previous.ended_at = previous.updated_at = now
            previous.status_reason = f"superseded by version {version.version}"
            session.flush()
            _event(session, actor, AuditAction.AGREEMENT_SUPERSEDED, previous, now)
    agreement.in_force_version = version.version
    version.status = S.ACTIVE.value
    version.activated_at = version.updated_at = now
    session.flush()
    _event(session, actor, AuditAction.AGREEMENT_ACTIVATED, version, now)
    return version


def _in_force(session: Session, actor: Actor, agreement_id: str) -> AgreementVersion:
    agreement = get_agreement(session, actor.principal, agreement_id)
    if agreement.in_force_version is None:
        raise InvalidTransition("the agreement has no version in force")
    return _steward_version(session, actor, agreement_id, agreement.in_force_version)


_MOVES: dict[str, tuple[tuple[S, ...], S, AuditAction]] = {
    "suspend": ((S.ACTIVE,), S.SUSPENDED, AuditAction.AGREEMENT_SUSPENDED),
    "resume": ((S.SUSPENDED,), S.ACTIVE, AuditAction.AGREEMENT_RESUMED),
    "terminate": ((S.ACTIVE, S.SUSPENDED), S.TERMINATED, AuditAction.AGREEMENT_TERMINATED),
}


def move(
    session: Session,
    actor: Actor,
    agreement_id: str,
    move_name: str,
    reason: str,
    now: datetime,
) -> AgreementVersion:
    """Suspend, resume or terminate the version in force, with a reason."""
    allowed, target, action = _MOVES[move_name]
    version = _in_force(session, actor, agreement_id)
    _require(version, *allowed, action=move_name)
    org = actor.principal.organisation_id
    if move_name == "resume" and version.suspended_by not in (None, org):
        raise Forbidden(
            f"only {version.suspended_by}, which suspended the agreement, may resume it"
        )
    if target is S.ACTIVE and now >= as_utc(version.valid_until):
        raise InvalidTransition("the version has passed its validity window")
    version.suspended_by = org if target is S.SUSPENDED else None
    version.status = target.value
    version.status_reason = reason
    version.updated_at = now
    if target is S.TERMINATED:
        version.ended_at = now
    session.flush()
    _event(session, actor, action, version, now, reason=reason)
    return version


def amend(
    session: Session, actor: Actor, agreement_id: str, data: AgreementAmend, now: datetime
) -> AgreementVersion:
    """A new draft version from the latest; the version in force stays in force."""
    agreement = get_agreement(session, actor.principal, agreement_id)
    session.refresh(agreement, with_for_update=True)
    latest = _steward_version(session, actor, agreement_id, agreement.latest_version)
    _require(latest, S.ACTIVE, S.SUSPENDED, S.REJECTED, action="amend")
    terms = _merged_terms(latest, data)
    if actor.principal.organisation_id not in set(terms.providers) | set(terms.recipients):
        raise Forbidden("a steward cannot remove its own organisation from the parties")
    _validate_terms(session, terms)
    agreement.latest_version += 1
    version = AgreementVersion(
        id=str(uuid.uuid4()),
        agreement_id=agreement_id,
        version=agreement.latest_version,
        status=S.DRAFT.value,
        created_by=actor.principal.subject,
        created_at=now,
        updated_at=now,
    )
    _apply_terms(version, terms)
    session.add(version)
    session.flush()
    _event(session, actor, AuditAction.AGREEMENT_AMENDED, version, now, amends=latest.version)
    return version


def list_visible(
    session: Session, principal: Principal, *, status: S | None, cursor: str | None, limit: int
) -> list[Agreement]:
    query = select(Agreement).order_by(Agreement.id).limit(limit)
    if cursor:
        query = query.where(Agreement.id > cursor)
    if principal.role not in OVERSIGHT_ROLES:
        # As get_agreement: a party to the latest version or to the version in force (an
        # organisation an amendment removed does not see the agreement any more).
        party = (
            select(AgreementVersion.id)
            .join(AgreementParty, AgreementParty.version_id == AgreementVersion.id)
            .where(
                AgreementVersion.agreement_id == Agreement.id,
                or_(
                    AgreementVersion.version == Agreement.latest_version,
                    AgreementVersion.version == Agreement.in_force_version,
                ),
                AgreementParty.organisation_id == principal.organisation_id,
            )
        )
        query = query.where(party.exists())
    if status is not None:
        query = query.where(
            Agreement.id.in_(
                select(AgreementVersion.agreement_id).where(
                    AgreementVersion.status == status.value,
                    AgreementVersion.version == Agreement.latest_version,
                )
            )
        )
    return list(session.scalars(query))


def sweep(session: Session, actor: Actor, now: datetime) -> dict[str, int]:
    """Activate approved versions whose window opened; expire those whose window closed."""
    counts = {"activated": 0, "expired": 0}
    due = session.scalars(
        select(AgreementVersion)
        .where(AgreementVersion.status.in_([S.ACTIVE.value, S.SUSPENDED.value]))
        .where(AgreementVersion.valid_until <= now)
        .with_for_update()
    )
    for version in list(due):
        version.status = S.EXPIRED.value
        version.ended_at = version.updated_at = now
        session.flush()
        _event(session, actor, AuditAction.AGREEMENT_EXPIRED, version, now)
        counts["expired"] += 1
    ready = session.scalars(
        select(AgreementVersion)
        .where(AgreementVersion.status == S.APPROVED.value)
        .where(AgreementVersion.valid_from <= now, AgreementVersion.valid_until > now)
        .order_by(AgreementVersion.agreement_id, AgreementVersion.version)
        .with_for_update()
    )
    for version in list(ready):
        try:
            activate_version(session, actor, version, now)
        except InvalidTransition:  # raised before any change: the version in force is
            continue  # suspended, and the new one waits for the suspending party
        counts["activated"] += 1
    return counts
