"""The decision endpoint partner systems call before every exchange."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path

from service.core.deps import ANY_ROLE, Actor, RuntimeDep, SessionDep, request_id, roles
from service.core.errors import Conflict, Forbidden, InvalidRequest, NotFound, problem_responses
from service.core.identity import Principal, Role
from service.decisions import service
from service.decisions.models import Decision
from service.decisions.schemas import DecisionInput, DecisionRead, DecisionRequest

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])

Partner = Annotated[Principal, Depends(roles(Role.PARTNER))]
Reader = Annotated[Principal, Depends(roles(*ANY_ROLE))]
Auditor = Annotated[Principal, Depends(roles(Role.AUDITOR, Role.ADMIN))]
DecisionId = Annotated[str, Path(max_length=36)]


def decision_read(decision: Decision) -> DecisionRead:
    return DecisionRead.model_validate(
        {
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
            "decided_at": decision.decided_at,
            "audit_seq": decision.audit_seq,
        }
    )


@router.post(
    "",
    summary="Decide whether the caller may receive these fields for this purpose",
    description=(
        "Evaluated by the Rego bundle in `policies/`; answered only after the decision and its "
        "audit event are committed. A repeated `Idempotency-Key` returns the same decision."
    ),
    responses=problem_responses(Forbidden, Conflict, InvalidRequest),
)
def decide(
    body: DecisionRequest,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Partner,
    rid: Annotated[str | None, Depends(request_id)],
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> DecisionRead:
    if body.subjects is not None and len(body.subjects) > runtime.settings.max_batch_subjects:
        raise InvalidRequest(f"at most {runtime.settings.max_batch_subjects} subjects per request")
    decision = service.decide(runtime, session, Actor(principal, rid), body, idempotency_key)
    return decision_read(decision)


@router.get(
    "/{decision_id}",
    summary="Read a decision back",
    responses=problem_responses(Forbidden, NotFound),
)
def read_decision(decision_id: DecisionId, session: SessionDep, principal: Reader) -> DecisionRead:
    return decision_read(service.get(session, principal, decision_id))


@router.get(
    "/{decision_id}/input",
    summary="The exact policy input a decision was made on (for replay)",
    responses=problem_responses(Forbidden, NotFound),
)
def read_decision_input(
    decision_id: DecisionId, session: SessionDep, principal: Auditor
) -> DecisionInput:
    decision = service.get(session, principal, decision_id)
    return DecisionInput(decision_id=decision.id, input=decision.input_document)
