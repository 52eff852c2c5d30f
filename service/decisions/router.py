"""The decision endpoint partner systems call before every exchange."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Request, Response

from service.core.context import Runtime
from service.core.deps import ANY_ROLE, Actor, SessionDep, roles
from service.core.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unavailable,
    problem_responses,
)
from service.core.identity import Principal, Role
from service.decisions import service
from service.decisions.schemas import DecisionInput, DecisionRead, DecisionRequest

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])

Partner = Annotated[Principal, Depends(roles(Role.PARTNER))]
Reader = Annotated[Principal, Depends(roles(*ANY_ROLE))]
Auditor = Annotated[Principal, Depends(roles(Role.AUDITOR, Role.ADMIN))]
DecisionId = Annotated[str, Path(max_length=36)]


def _settle(
    answered: asyncio.Future[dict[str, Any]],
    answer: dict[str, Any] | None,
    error: BaseException | None,
) -> None:
    if answered.done():  # the request gave up waiting
        return
    if error is not None:
        answered.set_exception(error)
    else:
        answered.set_result(answer or {})


def _json(answer: dict[str, Any]) -> Response:
    return Response(content=orjson.dumps(answer), media_type="application/json")


@router.post(
    "",
    summary="Decide whether the caller may receive these fields for this purpose",
    description=(
        "Evaluated by the Rego bundle in `policies/`; answered only after the decision and its "
        "audit event are committed. A repeated `Idempotency-Key` returns the same decision."
    ),
    response_model=DecisionRead,
    responses=problem_responses(Forbidden, Conflict, InvalidRequest, Unavailable),
)
async def decide(
    body: DecisionRequest,
    request: Request,
    principal: Partner,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> Response:
    # The runtime and request id straight from the request: every dependency FastAPI solves
    # costs on the event loop, and this route is the hot path.
    runtime: Runtime = request.app.state.runtime
    rid: str | None = getattr(request.state, "request_id", None)
    if body.subjects is not None and len(body.subjects) > runtime.settings.max_batch_subjects:
        raise InvalidRequest(f"at most {runtime.settings.max_batch_subjects} subjects per request")
    # A decision thread reads the context and evaluates the policy; the writer thread commits.
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[dict[str, Any]] = loop.create_future()

    def settle(answer: dict[str, Any] | None, error: BaseException | None) -> None:
        # RuntimeError: the event loop has closed, and nobody waits for this answer.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, answered, answer, error)

    runtime.decider.submit(service.Ask(Actor(principal, rid), body, idempotency_key), settle)
    late = Unavailable("the decision could not be made and recorded in time")
    deadline = loop.call_later(runtime.decision_writer.wait_seconds, _settle, answered, None, late)
    try:
        return _json(await answered)
    finally:
        deadline.cancel()


@router.get(
    "/{decision_id}",
    summary="Read a decision back",
    response_model=DecisionRead,
    responses=problem_responses(Forbidden, NotFound),
)
def read_decision(decision_id: DecisionId, session: SessionDep, principal: Reader) -> Response:
    return _json(service.stored_answer(service.get(session, principal, decision_id)))


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
