"""Consent routes for partner systems (and stewards and auditors, to read)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from service.consents import schemas, service
from service.consents.models import Consent
from service.core.deps import Actor, RuntimeDep, SessionDep, request_id, roles
from service.core.errors import (
    Forbidden,
    InvalidRequest,
    InvalidTransition,
    NotFound,
    problem_responses,
)
from service.core.identity import Principal, Role

router = APIRouter(prefix="/v1/consents", tags=["consents"])

Partner = Annotated[Principal, Depends(roles(Role.PARTNER))]
Reader = Annotated[Principal, Depends(roles(Role.PARTNER, Role.STEWARD, Role.AUDITOR, Role.ADMIN))]
RequestId = Annotated[str | None, Depends(request_id)]
ConsentId = Annotated[str, Path(max_length=36)]


def _read(consent: Consent) -> schemas.ConsentRead:
    return schemas.ConsentRead.model_validate(consent)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Record a consent the caller collected",
    responses=problem_responses(Forbidden, InvalidRequest),
)
def record_consent(
    body: schemas.ConsentCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Partner,
    rid: RequestId,
) -> schemas.ConsentRead:
    consent = service.record(
        session, Actor(principal, rid), runtime.pseudonymise, body, runtime.clock.now()
    )
    return _read(consent)


@router.post(
    "/history",
    summary="A subject's consents and their events (the subject id is sent in the body)",
    responses=problem_responses(Forbidden),
)
def consent_history(
    body: schemas.HistoryQuery, session: SessionDep, runtime: RuntimeDep, principal: Reader
) -> schemas.ConsentHistory:
    pseudonym = runtime.pseudonymise(body.subject_id)
    consents = service.history(session, principal, pseudonym)
    events = service.events(session, (c.id for c in consents))
    return schemas.ConsentHistory(
        subject_pseudonym=pseudonym,
        consents=[_read(c) for c in consents],
        events={
            cid: [schemas.ConsentEventRead.model_validate(e) for e in rows]
            for cid, rows in events.items()
        },
    )


@router.get(
    "/{consent_id}",
    summary="Read a consent",
    responses=problem_responses(Forbidden, NotFound),
)
def read_consent(
    consent_id: ConsentId, session: SessionDep, principal: Reader
) -> schemas.ConsentRead:
    return _read(service.get(session, principal, consent_id))


@router.get(
    "/{consent_id}/events",
    summary="The append-only history of a consent",
    responses=problem_responses(Forbidden, NotFound),
)
def consent_events(
    consent_id: ConsentId, session: SessionDep, principal: Reader
) -> list[schemas.ConsentEventRead]:
    service.get(session, principal, consent_id)
    rows = service.events(session, [consent_id]).get(consent_id, [])
    return [schemas.ConsentEventRead.model_validate(e) for e in rows]


@router.post(
    "/{consent_id}/withdraw",
    summary="Withdraw a consent; the next decision already sees it",
    responses=problem_responses(Forbidden, NotFound, InvalidTransition),
)
def withdraw_consent(
    consent_id: ConsentId,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Partner,
    rid: RequestId,
    body: schemas.Withdrawal | None = None,
) -> schemas.ConsentRead:
    reason = body.reason if body is not None else ""
    consent = service.withdraw(
        session, Actor(principal, rid), consent_id, reason, runtime.clock.now()
    )
    return _read(consent)


@router.post(
    "/{consent_id}/renew",
    summary="Renew a given or expired consent",
    responses=problem_responses(Forbidden, NotFound, InvalidTransition, InvalidRequest),
)
def renew_consent(
    consent_id: ConsentId,
    body: schemas.Renewal,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Partner,
    rid: RequestId,
) -> schemas.ConsentRead:
    consent = service.renew(session, Actor(principal, rid), consent_id, body, runtime.clock.now())
    return _read(consent)
