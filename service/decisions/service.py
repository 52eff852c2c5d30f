"""Deciding an access request: context → policy → durable record → answer.

The context is read in a read-only transaction and the policy evaluated outside any
transaction, so the write transaction (decision row and audit event) is short. The
caller only sees the decision after that transaction commits; any failure before then
means no answer at all, never an allow.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.agreements import service as agreements
from service.audit import log as audit
from service.audit.actions import AuditAction, Outcome
from service.audit.canonical import canonical_json
from service.core.context import Runtime
from service.core.deps import Actor
from service.core.errors import Conflict, NotFound
from service.core.identity import Principal, Role
from service.decisions.context import build_input
from service.decisions.engines import PolicyError
from service.decisions.engines.base import DECISION_ENTRYPOINT
from service.decisions.models import Decision
from service.decisions.schemas import DecisionRequest
from service.reviews import service as reviews

log = logging.getLogger("accord.decisions")
POLICY_UNAVAILABLE = "policy_unavailable"


def _fingerprint(request: DecisionRequest, pseudonyms: list[str] | None) -> str:
    body = request.model_dump(mode="json")
    body["subjects"] = pseudonyms
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _reasons(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not all(
        isinstance(r, dict) and isinstance(r.get("code"), str) and isinstance(r.get("message"), str)
        for r in value
    ):
        raise PolicyError("malformed reasons")
    return [{"code": r["code"], "message": r["message"]} for r in value]


def checked_result(result: Any, pseudonyms: list[str]) -> dict[str, Any]:
    """Accept the policy's answer only if it has exactly the contract's shape."""
    if not isinstance(result, dict) or not isinstance(result.get("allow"), bool):
        raise PolicyError("result is not a decision")
    obligations = result.get("obligations")
    if not isinstance(obligations, dict) or not all(
        isinstance(obligations.get(k), list)
        for k in ("permitted_fields", "dropped_fields", "ethics_conditions")
    ):
        raise PolicyError("malformed obligations")
    subjects = result.get("subjects")
    if not isinstance(subjects, list) or len(subjects) != len(pseudonyms):
        raise PolicyError("per-subject results do not match the request")
    per_subject = []
    for index, (entry, pseudonym) in enumerate(zip(subjects, pseudonyms, strict=True)):
        if not isinstance(entry, dict) or entry.get("subject") != pseudonym:
            raise PolicyError("per-subject results out of order")
        if not isinstance(entry.get("allow"), bool):
            raise PolicyError("per-subject allow is not a boolean")
        per_subject.append(
            {
                "index": index,
                "subject": pseudonym,
                "allow": entry["allow"],
                "reasons": _reasons(entry.get("reasons", [])),
            }
        )
    reasons = _reasons(result.get("reasons"))
    allow = result["allow"] and not reasons and all(s["allow"] for s in per_subject)
    return {
        "allow": allow,
        "reasons": reasons,
        "obligations": {
            "permitted_fields": list(obligations["permitted_fields"]),
            "dropped_fields": list(obligations["dropped_fields"]),
            "pseudonymise": bool(obligations.get("pseudonymise", True)),
            "retention_days": obligations.get("retention_days"),
            "min_cohort": obligations.get("min_cohort"),
            "ethics_conditions": list(obligations["ethics_conditions"]),
        },
        "subjects": per_subject,
    }


def _unavailable(request: DecisionRequest, pseudonyms: list[str]) -> dict[str, Any]:
    """Fail closed: a deny for the request and every subject."""
    reason = {"code": POLICY_UNAVAILABLE, "message": "the policy could not be evaluated"}
    return {
        "allow": False,
        "reasons": [reason],
        "obligations": {
            "permitted_fields": [],
            "dropped_fields": sorted(request.fields),
            "pseudonymise": True,
            "retention_days": None,
            "min_cohort": None,
            "ethics_conditions": [],
        },
        "subjects": [
            {"index": i, "subject": p, "allow": False, "reasons": [reason]}
            for i, p in enumerate(pseudonyms)
        ],
    }


def decide(
    runtime: Runtime,
    session: Session,
    actor: Actor,
    request: DecisionRequest,
    idempotency_key: str | None,
) -> Decision:
    principal = actor.principal
    pseudonyms = (
        [runtime.pseudonymise(s) for s in request.subjects]
        if request.subjects is not None
        else None
    )
    fingerprint = _fingerprint(request, pseudonyms)
    now = runtime.clock.now()
    with runtime.read_sessions() as reader:
        if idempotency_key is not None:
            previous = reader.scalar(
                select(Decision).where(
                    Decision.requester_org == principal.organisation_id,
                    Decision.idempotency_key == idempotency_key,
                )
            )
            if previous is not None:
                if previous.request_fingerprint != fingerprint:
                    raise Conflict("the idempotency key was used for a different request")
                return previous
        document, version, review = build_input(
            reader,
            principal=principal,
            agreement_id=request.agreement_id,
            purpose=request.purpose,
            fields=list(request.fields),
            pseudonyms=pseudonyms,
            cohort_size=request.aggregate.cohort_size if request.aggregate else None,
            now=now,
        )
    subjects = pseudonyms or []
    policy = runtime.policy
    revision = policy.revision
    metrics = runtime.metrics
    evaluation_started = time.perf_counter()
    try:
        outcome = checked_result(policy.evaluate(DECISION_ENTRYPOINT, document), subjects)
        action = AuditAction.DECISION_MADE
    except PolicyError as exc:
        log.error("policy evaluation failed: %s", type(exc).__name__)
        outcome = _unavailable(request, subjects)
        action = AuditAction.DECISION_FAILED
    metrics.policy_seconds.labels(policy.name).observe(time.perf_counter() - evaluation_started)
    obligations = outcome["obligations"]
    decision = Decision(
        id=str(uuid.uuid4()),
        agreement_id=request.agreement_id,
        agreement_version=version.version if version is not None else None,
        purpose=request.purpose,
        kind=document["request"]["kind"],
        requester_org=principal.organisation_id,
        requester_subject=principal.subject,
        allow=outcome["allow"],
        reasons=outcome["reasons"],
        obligations=obligations,
        subject_results=outcome["subjects"],
        policy_revision=revision,
        engine=policy.name,
        input_document=document,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        decided_at=now,
        audit_seq=-1,
    )
    denied_subject_reasons = {r["code"] for s in outcome["subjects"] for r in s["reasons"]}
    reason_codes = sorted({r["code"] for r in outcome["reasons"]} | denied_subject_reasons)
    append_started = time.perf_counter()
    event = audit.append(
        session,
        actor,
        audit.EventRecord(
            action,
            "decision",
            decision.id,
            outcome=Outcome.ALLOW if decision.allow else Outcome.DENY,
            agreement_id=request.agreement_id,
            agreement_version=decision.agreement_version,
            purpose=request.purpose,
            reasons=reason_codes,
            minimisation={
                "requested": sorted(request.fields),
                "permitted": obligations["permitted_fields"],
                "dropped": obligations["dropped_fields"],
            },
            ethics_review=reviews.review_audit_document(review),
            policy_revision=revision,
            subjects=subjects,
            details={
                "kind": decision.kind,
                "subjects_allowed": sum(1 for s in outcome["subjects"] if s["allow"]),
                "subjects_denied": sum(1 for s in outcome["subjects"] if not s["allow"]),
                "cohort_size": document["request"]["cohort_size"],
            },
        ),
        now,
    )
    decision.audit_seq = event.seq
    session.add(decision)
    session.flush()
    metrics.audit_append_seconds.observe(time.perf_counter() - append_started)
    metrics.tree_size.set(event.seq + 1)
    metrics.decisions.labels("allow" if decision.allow else "deny").inc()
    for code in reason_codes:
        metrics.decision_reasons.labels(code).inc()
    return decision


def can_read(session: Session, principal: Principal, decision: Decision) -> bool:
    if principal.role in (Role.AUDITOR, Role.ADMIN):
        return True
    if principal.organisation_id == decision.requester_org:
        return True
    if principal.role is Role.STEWARD and decision.agreement_version is not None:
        version = agreements.get_version(session, decision.agreement_id, decision.agreement_version)
        return principal.organisation_id in agreements.party_orgs(version)
    return False


def get(session: Session, principal: Principal, decision_id: str) -> Decision:
    decision = session.get(Decision, decision_id)
    if decision is None or not can_read(session, principal, decision):
        raise NotFound(f"decision {decision_id} not found")
    return decision
