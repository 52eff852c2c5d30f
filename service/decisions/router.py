"""The decision endpoint partner systems call before every exchange."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError

from service.core.context import Runtime
from service.core.deps import ANY_ROLE, Actor, RuntimeDep, SessionDep, request_id, roles
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


async def _recorded(
    runtime: Runtime, actor: Actor, decided: service.Decided, idempotency_key: str | None
) -> dict[str, Any]:
    """Wait, holding no thread, until the writer has committed the decision and its event."""
    unrecorded = decided.unrecorded
    assert unrecorded is not None
    writer = runtime.decision_writer
    started = time.perf_counter()
    future = writer.submit(actor, unrecorded.event, unrecorded.row, unrecorded.at)
    try:
        seq = await asyncio.wait_for(asyncio.wrap_future(future), writer.wait_seconds)
    except TimeoutError:
        raise Unavailable("the decision could not be recorded in time") from None
    except IntegrityError:
        if idempotency_key is None:
            raise
        # The same key sent twice at once: the decision recorded first is the answer.
        replay = partial(
            service.replayed,
            runtime,
            actor.principal,
            idempotency_key,
            unrecorded.row["request_fingerprint"],
        )
        answer: dict[str, Any] = await run_in_threadpool(replay)
        return answer
    service.recorded(runtime, decided, seq, time.perf_counter() - started)
    return decided.answer


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
    runtime: RuntimeDep,
    principal: Partner,
    rid: Annotated[str | None, Depends(request_id)],
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> Response:
    if body.subjects is not None and len(body.subjects) > runtime.settings.max_batch_subjects:
        raise InvalidRequest(f"at most {runtime.settings.max_batch_subjects} subjects per request")
    # A decision thread reads the context and evaluates the policy; the writer thread commits.
    actor = Actor(principal, rid)
    decide = partial(service.decide, runtime, actor, body, idempotency_key)
    decided = await asyncio.get_running_loop().run_in_executor(runtime.decision_pool, decide)
    if decided.unrecorded is None:  # a replay of a stored decision
        return _json(decided.answer)
    return _json(await _recorded(runtime, actor, decided, idempotency_key))


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
