"""Agreement routes for stewards (and, read-only, parties and oversight roles)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status
from sqlalchemy.orm import Session

from service.agreements import schemas, service
from service.agreements.models import Agreement, AgreementVersion
from service.core.deps import ANY_ROLE, Actor, RuntimeDep, SessionDep, request_id, roles
from service.core.errors import (
    Forbidden,
    InvalidRequest,
    InvalidTransition,
    NotFound,
    Unavailable,
    problem_responses,
)
from service.core.identity import Principal, Role
from service.decisions.engines import PolicyError

router = APIRouter(prefix="/v1/agreements", tags=["agreements"])

Steward = Annotated[Principal, Depends(roles(Role.STEWARD))]
Reader = Annotated[Principal, Depends(roles(*ANY_ROLE))]
RequestId = Annotated[str | None, Depends(request_id)]
AgreementId = Annotated[str, Path(max_length=36)]
VersionNo = Annotated[int, Path(ge=1, le=1_000_000)]
CHANGE_ERRORS = problem_responses(Forbidden, NotFound, InvalidTransition, InvalidRequest)


def version_read(version: AgreementVersion) -> schemas.VersionRead:
    terms = service.terms_of(version)
    return schemas.VersionRead.model_validate(
        {
            **terms,
            "agreement_id": version.agreement_id,
            "version": version.version,
            "status": version.status,
            "status_reason": version.status_reason,
            "suspended_by": version.suspended_by,
            "review_required": version.review_required,
            "approvals": [schemas.ApprovalRead.model_validate(a) for a in version.approvals],
            "awaiting_approval_from": (
                service.awaiting(version)
                if version.status == schemas.AgreementStatus.PENDING_APPROVAL
                else []
            ),
            "created_by": version.created_by,
            "created_at": version.created_at,
            "submitted_at": version.submitted_at,
            "approved_at": version.approved_at,
            "activated_at": version.activated_at,
            "ended_at": version.ended_at,
        }
    )


def agreement_read(session: Session, agreement: Agreement) -> schemas.AgreementRead:
    versions = service.versions_of(session, agreement.id)
    return schemas.AgreementRead(
        id=agreement.id,
        created_by_org=agreement.created_by_org,
        created_at=agreement.created_at,
        in_force_version=agreement.in_force_version,
        latest_version=agreement.latest_version,
        versions=[schemas.VersionSummary(version=v.version, status=v.status) for v in versions],
        latest=version_read(versions[-1]),
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Draft a new agreement",
    responses=problem_responses(Forbidden, InvalidRequest),
)
def create_agreement(
    body: schemas.AgreementCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Steward,
    rid: RequestId,
) -> schemas.AgreementRead:
    agreement = service.create(session, Actor(principal, rid), body, runtime.clock.now())
    return agreement_read(session, agreement)


@router.get(
    "",
    summary="List the agreements the caller may see",
    responses=problem_responses(Forbidden),
)
def list_agreements(
    session: SessionDep,
    principal: Reader,
    status_: Annotated[schemas.AgreementStatus | None, Query(alias="status")] = None,
    cursor: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> schemas.AgreementPage:
    items = service.list_visible(session, principal, status=status_, cursor=cursor, limit=limit)
    return schemas.AgreementPage(
        items=[agreement_read(session, a) for a in items],
        next_cursor=items[-1].id if len(items) == limit else None,
    )


@router.get(
    "/{agreement_id}",
    summary="Read an agreement and its latest version",
    responses=problem_responses(Forbidden, NotFound),
)
def read_agreement(
    agreement_id: AgreementId, session: SessionDep, principal: Reader
) -> schemas.AgreementRead:
    return agreement_read(session, service.get_agreement(session, principal, agreement_id))


@router.get(
    "/{agreement_id}/versions/{version}",
    summary="Read one version of an agreement",
    responses=problem_responses(Forbidden, NotFound),
)
def read_version(
    agreement_id: AgreementId, version: VersionNo, session: SessionDep, principal: Reader
) -> schemas.VersionRead:
    service.get_agreement(session, principal, agreement_id)
    return version_read(service.get_version(session, agreement_id, version))


@router.patch(
    "/{agreement_id}/versions/{version}",
    summary="Edit a draft version",
    responses=CHANGE_ERRORS,
)
def edit_version(
    agreement_id: AgreementId,
    version: VersionNo,
    body: schemas.AgreementAmend,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Steward,
    rid: RequestId,
) -> schemas.VersionRead:
    changed = service.edit_draft(
        session, Actor(principal, rid), agreement_id, version, body, runtime.clock.now()
    )
    return version_read(changed)


@router.post(
    "/{agreement_id}/versions/{version}/submit",
    summary="Submit a draft for approval by every party",
    responses=problem_responses(Forbidden, NotFound, InvalidTransition, Unavailable),
)
def submit_version(
    agreement_id: AgreementId,
    version: VersionNo,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Steward,
    rid: RequestId,
) -> schemas.VersionRead:
    try:
        submitted = service.submit(
            session,
            Actor(principal, rid),
            runtime.policy,
            agreement_id,
            version,
            runtime.clock.now(),
        )
    except PolicyError as exc:
        raise Unavailable("the policy engine could not decide whether a review is needed") from exc
    return version_read(submitted)


@router.post(
    "/{agreement_id}/versions/{version}/approve",
    summary="Approve a version for the caller's organisation",
    responses=CHANGE_ERRORS,
)
def approve_version(
    agreement_id: AgreementId,
    version: VersionNo,
    body: schemas.Comment,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Steward,
    rid: RequestId,
) -> schemas.VersionRead:
    decided = service.decide(
        session,
        Actor(principal, rid),
        agreement_id,
        version,
        approve=True,
        comment=body.comment,
        now=runtime.clock.now(),
    )
    return version_read(decided)


@router.post(
    "/{agreement_id}/versions/{version}/reject",
    summary="Reject a version for the caller's organisation",
    responses=CHANGE_ERRORS,
)
def reject_version(
    agreement_id: AgreementId,
    version: VersionNo,
    body: schemas.RequiredComment,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Steward,
    rid: RequestId,
) -> schemas.VersionRead:
    decided = service.decide(
        session,
        Actor(principal, rid),
        agreement_id,
        version,
        approve=False,
        comment=body.comment,
        now=runtime.clock.now(),
    )
    return version_read(decided)


@router.post(
    "/{agreement_id}/versions/{version}/activate",
    summary="Put an approved version in force",
    responses=CHANGE_ERRORS,
)
def activate_version(
    agreement_id: AgreementId,
    version: VersionNo,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Steward,
    rid: RequestId,
) -> schemas.VersionRead:
    activated = service.activate(
        session, Actor(principal, rid), agreement_id, version, runtime.clock.now()
    )
    return version_read(activated)


def _move_route(move: str, summary: str) -> None:
    @router.post(
        f"/{{agreement_id}}/{move}",
        summary=summary,
        responses=CHANGE_ERRORS,
        name=f"{move}_agreement",
    )
    def _route(
        agreement_id: AgreementId,
        body: schemas.Reason,
        session: SessionDep,
        runtime: RuntimeDep,
        principal: Steward,
        rid: RequestId,
    ) -> schemas.VersionRead:
        moved = service.move(
            session, Actor(principal, rid), agreement_id, move, body.reason, runtime.clock.now()
        )
        return version_read(moved)


_move_route("suspend", "Suspend the version in force")
_move_route("resume", "Resume a suspended agreement (by the party that suspended it)")
_move_route("terminate", "Terminate the agreement")


@router.post(
    "/{agreement_id}/amendments",
    status_code=status.HTTP_201_CREATED,
    summary="Start an amendment: a new draft version",
    responses=CHANGE_ERRORS,
)
def amend_agreement(
    agreement_id: AgreementId,
    body: schemas.AgreementAmend,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Steward,
    rid: RequestId,
) -> schemas.VersionRead:
    amended = service.amend(session, Actor(principal, rid), agreement_id, body, runtime.clock.now())
    return version_read(amended)
