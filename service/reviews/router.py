"""Ethics review routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from service.agreements import service as agreements
from service.agreements.schemas import AgreementStatus as S
from service.core.deps import ANY_ROLE, Actor, RuntimeDep, SessionDep, request_id, roles
from service.core.errors import Forbidden, InvalidTransition, NotFound, problem_responses
from service.core.identity import Principal, Role
from service.reviews import service
from service.reviews.schemas import ReviewCreate, ReviewRead

router = APIRouter(prefix="/v1/agreements", tags=["ethics reviews"])

Reviewer = Annotated[Principal, Depends(roles(Role.ETHICS_REVIEWER))]
Reader = Annotated[Principal, Depends(roles(*ANY_ROLE))]
AgreementId = Annotated[str, Path(max_length=36)]
VersionNo = Annotated[int, Path(ge=1, le=1_000_000)]
REVIEWABLE = {S.PENDING_APPROVAL.value, S.APPROVED.value, S.ACTIVE.value, S.SUSPENDED.value}


@router.post(
    "/{agreement_id}/versions/{version}/ethics-reviews",
    status_code=status.HTTP_201_CREATED,
    summary="Record an ethics review of a version",
    description="By an ethics reviewer of an organisation that is not a party to the version.",
    responses=problem_responses(Forbidden, NotFound, InvalidTransition),
)
def record_review(
    agreement_id: AgreementId,
    version: VersionNo,
    body: ReviewCreate,
    session: SessionDep,
    runtime: RuntimeDep,
    principal: Reviewer,
    rid: Annotated[str | None, Depends(request_id)],
) -> ReviewRead:
    agreements.get_agreement(session, principal, agreement_id)
    target = agreements.get_version(session, agreement_id, version, lock=True)
    if principal.organisation_id in agreements.party_orgs(target):
        # An independent review: a party's own reviewer would approve (or overturn a
        # committee's rejection of) the sharing its organisation asked for.
        raise Forbidden("a reviewer of a party to the agreement may not review it")
    if target.status not in REVIEWABLE:
        raise InvalidTransition(f"a {target.status} version cannot be reviewed")
    actor, now = Actor(principal, rid), runtime.clock.now()
    review = service.record_review(
        session,
        actor,
        agreement_id=agreement_id,
        version=version,
        version_id=target.id,
        data=body,
        now=now,
    )
    agreements.maybe_approve(session, actor, target, now)
    return ReviewRead.model_validate(review)


@router.get(
    "/{agreement_id}/versions/{version}/ethics-reviews",
    summary="List the ethics reviews of a version",
    responses=problem_responses(Forbidden, NotFound),
)
def list_reviews(
    agreement_id: AgreementId, version: VersionNo, session: SessionDep, principal: Reader
) -> list[ReviewRead]:
    agreements.get_agreement(session, principal, agreement_id)
    target = agreements.get_version(session, agreement_id, version)
    return [ReviewRead.model_validate(r) for r in service.list_reviews(session, target.id)]
