"""Deciding an access request: context → policy → durable record → answer.

Requests that arrive together are decided together (`decide_group`, on a decision thread,
see decider.py): their contexts are read in one read-only transaction and the policy is
evaluated outside any transaction, once per request, or once for requests that differ
only in their subjects (`grouped`, see `_evaluations`); the audit events and decision rows
are then committed together by the decision writer (group commit). This is the one route
that does not use the request's session: the caller only sees the decision after its write
transaction commits; any failure before then means no answer at all, never an allow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.agreements import service as agreements
from service.audit import log as audit
from service.audit.actions import AuditAction, Outcome
from service.core.clock import iso
from service.core.context import Runtime
from service.core.deps import Actor
from service.core.errors import Conflict, NotFound, Unavailable
from service.core.identity import Principal, Role
from service.core.ids import uuid7
from service.decisions.context import DecisionContext, Wanted, build_contexts
from service.decisions.engines import PolicyEngine, PolicyError, PolicyUndefined
from service.decisions.engines.base import DECISION_ENTRYPOINT, GROUPED_ENTRYPOINT
from service.decisions.models import Decision
from service.decisions.schemas import DecisionRequest

log = logging.getLogger("accord.decisions")
POLICY_UNAVAILABLE = "policy_unavailable"


def _fingerprint(request: DecisionRequest, pseudonyms: list[str] | None) -> str:
    """Identifies a request for idempotency (internal: plain sorted JSON is enough)."""
    body = request.model_dump(mode="json")
    body["subjects"] = pseudonyms
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _reasons(value: Any) -> list[dict[str, str]]:
    if isinstance(value, list) and not value:
        return []
    if not isinstance(value, list) or not all(
        isinstance(r, dict) and isinstance(r.get("code"), str) and isinstance(r.get("message"), str)
        for r in value
    ):
        raise PolicyError("malformed reasons")
    return [{"code": r["code"], "message": r["message"]} for r in value]


def _strings(value: Any, within: frozenset[str] | None = None) -> list[str]:
    """A list of distinct strings (each one of `within`, when given), else PolicyError."""
    if not isinstance(value, list) or not all(type(v) is str for v in value):
        raise PolicyError("malformed obligations")
    if len(set(value)) != len(value) or (within is not None and not within.issuperset(value)):
        raise PolicyError("malformed obligations")
    return list(value)


def _count_or_none(value: Any) -> int | None:
    if value is None or (type(value) is int and value >= 0):
        return value
    raise PolicyError("malformed obligations")


def _obligations(value: Any, fields: list[str]) -> dict[str, Any]:
    """The contract's obligations: the permitted and dropped fields are requested fields
    (never both), and every value has its type."""
    if not isinstance(value, dict):
        raise PolicyError("malformed obligations")
    requested = frozenset(fields)
    permitted = _strings(value.get("permitted_fields"), requested)
    dropped = _strings(value.get("dropped_fields"), requested)
    pseudonymise = value.get("pseudonymise")
    if not set(permitted).isdisjoint(dropped) or type(pseudonymise) is not bool:
        raise PolicyError("malformed obligations")
    conditions = value.get("ethics_conditions")
    if not isinstance(conditions, list) or not all(type(c) is str for c in conditions):
        raise PolicyError("malformed obligations")
    return {
        "permitted_fields": permitted,
        "dropped_fields": dropped,
        "pseudonymise": pseudonymise,
        "retention_days": _count_or_none(value.get("retention_days")),
        "min_cohort": _count_or_none(value.get("min_cohort")),
        "ethics_conditions": list(conditions),
    }


def checked_result(result: Any, pseudonyms: list[str], fields: list[str]) -> dict[str, Any]:
    """Accept the policy's answer only if it has exactly the contract's shape and agrees
    with itself: an allow has no reasons and allows every subject, a deny says why, an
    allowed subject has no reasons and a denied one has some, and the obligations name
    only requested fields. Anything else is a PolicyError (the caller fails closed)."""
    if not isinstance(result, dict) or not isinstance(result.get("allow"), bool):
        raise PolicyError("result is not a decision")
    obligations = _obligations(result.get("obligations"), fields)
    subjects = result.get("subjects")
    if not isinstance(subjects, list) or len(subjects) != len(pseudonyms):
        raise PolicyError("per-subject results do not match the request")
    per_subject = []
    every_allowed = True
    for index, (entry, pseudonym) in enumerate(zip(subjects, pseudonyms, strict=True)):
        if type(entry) is not dict or entry.get("subject") != pseudonym:
            raise PolicyError("per-subject results out of order")
        allow = entry.get("allow")
        reasons = entry.get("reasons")
        if allow is True and reasons == []:
            per_subject.append({"index": index, "subject": pseudonym, "allow": True, "reasons": []})
            continue
        if allow is not False or not reasons:
            raise PolicyError("a subject's result contradicts its reasons")
        every_allowed = False
        per_subject.append(
            {"index": index, "subject": pseudonym, "allow": False, "reasons": _reasons(reasons)}
        )
    reasons = _reasons(result.get("reasons"))
    allow = result["allow"]
    if allow == bool(reasons) or (allow and not every_allowed):
        raise PolicyError("the result contradicts its reasons")
    return {
        "allow": allow,
        "reasons": reasons,
        "obligations": obligations,
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


def stored_answer(decision: Decision) -> dict[str, Any]:
    return {
        "decision_id": decision.id,
        "allow": decision.allow,
        "reasons": decision.reasons,
        "obligations": decision.obligations,
        "subjects": decision.subject_results,
        "agreement_id": decision.agreement_id,
        "agreement_version": decision.agreement_version,
        "purpose": decision.purpose,
        "policy_revision": decision.policy_revision,
        "engine": decision.engine,
        "decided_at": iso(decision.decided_at),
        "audit_seq": decision.audit_seq,
    }


@dataclass(frozen=True, slots=True)
class Unrecorded:
    """What the decision writer commits for a new decision: its audit event and row."""

    event: audit.EventRecord
    row: dict[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision's answer, and what must be recorded before it leaves (None when the
    answer is a stored decision, replayed for its idempotency key)."""

    answer: dict[str, Any]
    unrecorded: Unrecorded | None = None


def previous_answer(
    session: Session, principal: Principal, idempotency_key: str, fingerprint: str
) -> dict[str, Any] | None:
    """The stored answer to an earlier request with this key (409 if it was another)."""
    previous = session.scalar(
        select(Decision).where(
            Decision.requester_org == principal.organisation_id,
            Decision.idempotency_key == idempotency_key,
        )
    )
    if previous is None:
        return None
    if previous.request_fingerprint != fingerprint:
        raise Conflict("the idempotency key was used for a different request")
    return stored_answer(previous)


@dataclass(frozen=True, slots=True)
class Ask:
    """One decision request, as a decision thread takes it."""

    actor: Actor
    request: DecisionRequest
    idempotency_key: str | None


def decide_group(runtime: Runtime, asks: list[Ask]) -> list[Decided | Exception]:
    """Decide requests that arrived together, at one `now` and on one read of the database
    taken after they all arrived; without recording (the decider hands them to the writer,
    and `recorded` completes each answer). Each gets its own decision, or the error that
    kept it from one (an idempotency key reused for another request); a failed read fails
    them all (it raises)."""
    pseudonymise = runtime.pseudonymise
    pseudonyms = [
        None if a.request.subjects is None else [pseudonymise(s) for s in a.request.subjects]
        for a in asks
    ]
    # Only a request with an idempotency key is ever compared with another.
    fingerprints = [
        "" if a.idempotency_key is None else _fingerprint(a.request, p)
        for a, p in zip(asks, pseudonyms, strict=True)
    ]
    outcomes: list[Decided | Exception | None] = [None] * len(asks)
    now = runtime.clock.now()
    with runtime.read_sessions() as reader:
        if runtime.db.dialect.name == "postgresql":
            # Under READ COMMITTED each statement takes its own snapshot even inside a
            # transaction, so a transaction buys nothing here but BEGIN and ROLLBACK, two
            # round trips per group.
            reader.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        fresh = []
        for n, ask in enumerate(asks):
            if ask.idempotency_key is not None:
                try:
                    previous = previous_answer(
                        reader, ask.actor.principal, ask.idempotency_key, fingerprints[n]
                    )
                except Conflict as exc:
                    outcomes[n] = exc
                    continue
                if previous is not None:
                    outcomes[n] = Decided(previous)
                    continue
            fresh.append(n)
        wanted = [_wanted(asks[n], pseudonyms[n]) for n in fresh]
        contexts = build_contexts(reader, runtime.taxonomy.get(reader), wanted, now)
    values, revision = _evaluations_under_one_revision(runtime, wanted, contexts)
    for n, context, value in zip(fresh, contexts, values, strict=True):
        try:
            outcomes[n] = _decided(
                runtime, asks[n], pseudonyms[n] or [], fingerprints[n], context, now,
                value, revision,
            )  # fmt: skip
        except Exception as exc:  # this request's answer could not be made: no answer
            outcomes[n] = exc
    return [o for o in outcomes if o is not None]


def _wanted(ask: Ask, pseudonyms: list[str] | None) -> Wanted:
    request = ask.request
    return Wanted(
        principal=ask.actor.principal,
        agreement_id=request.agreement_id,
        purpose=request.purpose,
        fields=list(request.fields),
        pseudonyms=pseudonyms,
        cohort_size=request.aggregate.cohort_size if request.aggregate else None,
    )


def _evaluations_under_one_revision(
    runtime: Runtime, wanted: list[Wanted], contexts: list[DecisionContext]
) -> tuple[list[Any], str]:
    """`_evaluations`, and the policy revision they were all made under. A reload while
    they ran (the revision changed) means some may have been made under either bundle:
    they are made again, once; a second reload meanwhile fails them closed."""
    policy = runtime.policy
    for _ in range(2):
        revision = policy.revision
        values = _evaluations(runtime, wanted, contexts)
        if policy.revision == revision:
            return values, revision
    reloading = PolicyError("the policy was reloaded during evaluation")
    return [reloading] * len(contexts), policy.revision


def _evaluations(
    runtime: Runtime, wanted: list[Wanted], contexts: list[DecisionContext]
) -> list[Any]:
    """The policy's value for each request's context, or the PolicyError that kept it from
    one. Requests that differ only in their subjects (same caller, agreement, purpose and
    fields: their documents differ only in `request.subjects` and `consents`) are evaluated
    together by `grouped`, which proves the request-level rules once for all of them; each
    entry of its answer is what `result` answers for that request's own document, which is
    what the decision stores (tests/policies/test_contract.py holds the policy to this).
    Where `grouped` is undefined (the request fails a request-level rule) each request is
    evaluated on its own; any other failure fails all of them."""
    policy = runtime.policy
    observe = runtime.metrics.policy_seconds.labels(policy.name).observe
    groups: dict[Hashable, list[int]] = {}
    for n, want in enumerate(wanted):  # an aggregate is a group of its own
        alike = (want.principal, want.agreement_id, want.purpose, tuple(want.fields))
        groups.setdefault(n if want.pseudonyms is None else alike, []).append(n)
    values: list[Any] = [None] * len(contexts)
    for members in groups.values():
        if len(members) > 1:
            started = time.perf_counter()
            try:
                grouped = _evaluate_grouped(policy, [contexts[n].document for n in members])
            except PolicyUndefined:
                grouped = None
            except PolicyError as exc:
                grouped = [exc] * len(members)
            observe(time.perf_counter() - started)
            if grouped is not None:
                for n, value in zip(members, grouped, strict=True):
                    values[n] = value
                continue
        for n in members:
            started = time.perf_counter()
            try:
                values[n] = policy.evaluate(DECISION_ENTRYPOINT, contexts[n].document)
            except PolicyError as exc:
                values[n] = exc
            observe(time.perf_counter() - started)
    return values


def _evaluate_grouped(policy: PolicyEngine, documents: list[dict[str, Any]]) -> list[Any]:
    """`grouped` on one input for documents that differ only in their subjects."""
    consents: dict[str, Any] = {}
    for document in documents:
        consents.update(document["consents"])  # a subject's consents are the same in each
    value = policy.evaluate(
        GROUPED_ENTRYPOINT,
        {
            **documents[0],
            "consents": consents,
            "group": [document["request"]["subjects"] for document in documents],
        },
    )
    if not isinstance(value, list) or len(value) != len(documents):
        raise PolicyError("grouped results do not match the requests")
    return value


def _decided(
    runtime: Runtime,
    ask: Ask,
    subjects: list[str],
    fingerprint: str,
    context: DecisionContext,
    now: datetime,
    value: Any,
    revision: str,
) -> Decided:
    """Make the answer, audit event and row from the policy's value for a context (made
    under `revision`)."""
    request, principal = ask.request, ask.actor.principal
    document = context.document
    policy = runtime.policy
    try:
        if isinstance(value, PolicyError):
            raise value
        outcome = checked_result(value, subjects, list(request.fields))
        action = AuditAction.DECISION_MADE
    except PolicyError as exc:
        log.error("policy evaluation failed: %s", type(exc).__name__)
        outcome = _unavailable(request, subjects)
        action = AuditAction.DECISION_FAILED

    obligations = outcome["obligations"]
    kind = document["request"]["kind"]
    # As the policy: a caller that is not a recipient learns nothing of the agreement, so
    # neither the answer (nor its stored copy, nor the caller's own audit event) names the
    # version or the review in force. Auditors still read them in the stored input.
    agreement = document["agreement"]
    disclosed = agreement is not None and principal.organisation_id in agreement["recipients"]
    version = context.agreement_version if disclosed else None
    answer: dict[str, Any] = {
        "decision_id": uuid7(),
        "allow": outcome["allow"],
        "reasons": outcome["reasons"],
        "obligations": obligations,
        "subjects": outcome["subjects"],
        "agreement_id": request.agreement_id,
        "agreement_version": version,
        "purpose": request.purpose,
        "policy_revision": revision,
        "engine": policy.name,
        "decided_at": iso(now),
    }
    reason_codes = sorted(
        {r["code"] for r in outcome["reasons"]}
        | {r["code"] for s in outcome["subjects"] for r in s["reasons"]}
    )
    allowed = sum(1 for s in outcome["subjects"] if s["allow"])
    record = audit.EventRecord(
        action,
        "decision",
        answer["decision_id"],
        outcome=Outcome.ALLOW if answer["allow"] else Outcome.DENY,
        agreement_id=request.agreement_id,
        agreement_version=version,
        purpose=request.purpose,
        reasons=reason_codes,
        minimisation={
            "requested": sorted(request.fields),
            "permitted": obligations["permitted_fields"],
            "dropped": obligations["dropped_fields"],
        },
        ethics_review=context.review_audit if disclosed else None,
        policy_revision=revision,
        subjects=subjects,
        details={
            "kind": kind,
            "subjects_allowed": allowed,
            "subjects_denied": len(subjects) - allowed,
            "cohort_size": document["request"]["cohort_size"],
        },
    )
    row = {
        "id": answer["decision_id"],
        "agreement_id": request.agreement_id,
        "agreement_version": version,
        "purpose": request.purpose,
        "kind": kind,
        "requester_org": principal.organisation_id,
        "requester_subject": principal.subject,
        "allow": answer["allow"],
        "reasons": outcome["reasons"],
        "obligations": obligations,
        "subject_results": outcome["subjects"],
        "policy_revision": revision,
        "engine": policy.name,
        "input_document": document,
        # A decision that failed closed is not kept under its idempotency key: a retry
        # with the key is decided afresh rather than answered with the outage again.
        "idempotency_key": ask.idempotency_key if action is AuditAction.DECISION_MADE else None,
        "request_fingerprint": fingerprint if action is AuditAction.DECISION_MADE else "",
        "decided_at": now,
    }
    return Decided(answer, Unrecorded(record, row, now))


def replayed(
    runtime: Runtime, principal: Principal, idempotency_key: str, fingerprint: str
) -> dict[str, Any]:
    """The answer that won when two requests with one idempotency key were decided at once."""
    with runtime.read_sessions() as reader:
        previous = previous_answer(reader, principal, idempotency_key, fingerprint)
    if previous is None:
        raise Unavailable("the decision could not be recorded")
    return previous


def recorded(runtime: Runtime, decided: Decided, seq: int, waited_seconds: float) -> None:
    """Complete the answer once its decision and audit event are committed."""
    metrics = runtime.metrics
    metrics.audit_append_seconds.observe(waited_seconds)
    metrics.tree_size.set(seq + 1)
    metrics.decisions.labels("allow" if decided.answer["allow"] else "deny").inc()
    if decided.unrecorded is not None:
        for code in decided.unrecorded.event.reasons:
            metrics.decision_reasons.labels(code).inc()
    decided.answer["audit_seq"] = seq


def can_read(session: Session, principal: Principal, decision: Decision) -> bool:
    """Oversight, the requester, and the stewards and partner systems of the agreement's
    parties: a provider's system checks a decision before it releases the data."""
    if principal.role in (Role.AUDITOR, Role.ADMIN):
        return True
    if principal.organisation_id == decision.requester_org:
        return True
    if principal.role in (Role.STEWARD, Role.PARTNER) and decision.agreement_version is not None:
        version = agreements.get_version(session, decision.agreement_id, decision.agreement_version)
        return principal.organisation_id in agreements.party_orgs(version)
    return False


def get(session: Session, principal: Principal, decision_id: str) -> Decision:
    decision = session.get(Decision, decision_id)
    if decision is None or not can_read(session, principal, decision):
        raise NotFound(f"decision {decision_id} not found")
    return decision
