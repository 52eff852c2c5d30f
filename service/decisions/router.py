"""The decision endpoint partner systems call before every exchange.

`POST /v1/decisions` is an ordinary route, documented from `decide`'s signature, but served
by `DecisionEndpoint`, a middleware below the edge middleware (request id, rate limit, body
limit, metrics) that hands the request to `_serve` without FastAPI's routing: on the hot
path the route's matching, its request and response wrappers and its dependency solving
cost the event loop more than a decision's own share of it (bench/README.md). `_serve`
authenticates with the same guard and validates the `Idempotency-Key` header and the body
with the same constraints and model, raising the same errors, which Starlette's own
exception middleware turns into the application's problems.
tests/decisions/test_decision_route.py holds it to what FastAPI would answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any, cast

import orjson
from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import Field, TypeAdapter, ValidationError
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from service.core.context import Runtime
from service.core.deps import ANY_ROLE, Actor, SessionDep, authenticate, roles
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

_partner = roles(Role.PARTNER)
Partner = Annotated[Principal, Depends(_partner)]
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


def _too_late(answered: asyncio.Future[dict[str, Any]]) -> None:
    late = Unavailable("the decision could not be made and recorded in time")
    _settle(answered, None, late)


def _json(answer: dict[str, Any]) -> Response:
    return Response(content=orjson.dumps(answer), media_type="application/json")


_KEY_LIMITS: dict[str, Any] = {"min_length": 1, "max_length": 200}
_IDEMPOTENCY_KEY: TypeAdapter[str] = TypeAdapter(Annotated[str, Field(**_KEY_LIMITS)])


async def decide(
    body: DecisionRequest,
    request: Request,
    principal: Partner,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", **_KEY_LIMITS)] = None,
) -> Response:
    """The documented signature; served by `DecisionEndpoint` (see the module docstring)."""
    return await _decision(request, principal, body, idempotency_key)


async def _decision(
    request: Request, principal: Principal, body: DecisionRequest, idempotency_key: str | None
) -> Response:
    runtime: Runtime = request.app.state.runtime
    rid: str | None = getattr(request.state, "request_id", None)
    if body.subjects is not None and len(body.subjects) > runtime.settings.max_batch_subjects:
        raise InvalidRequest(f"at most {runtime.settings.max_batch_subjects} subjects per request")
    # A decision thread reads the context and evaluates the policy; a writer thread commits.
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[dict[str, Any]] = loop.create_future()

    def settle(answer: dict[str, Any] | None, error: BaseException | None) -> None:
        # RuntimeError: the event loop has closed, and nobody waits for this answer.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, answered, answer, error)

    runtime.decider.submit(service.Ask(Actor(principal, rid), body, idempotency_key), settle)
    deadline = loop.call_later(runtime.decision_writer.wait_seconds, _too_late, answered)
    try:
        return _json(await answered)
    finally:
        deadline.cancel()


def _located(exc: ValidationError, *where: str | int) -> list[dict[str, Any]]:
    return [{**e, "loc": (*where, *e["loc"])} for e in exc.errors(include_url=False)]


def _is_json(content_type: str | None) -> bool:
    """application/json or application/*+json, as FastAPI accepts a JSON body."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _serve(request: Request) -> Response:
    """`decide` as FastAPI would call it: authentication first (401, 403), then one 422
    for everything wrong with the header and the body."""
    principal = await authenticate(request, _partner)
    errors: list[dict[str, Any]] = []
    key = request.headers.get("idempotency-key")
    if key is not None:
        try:
            _IDEMPOTENCY_KEY.validate_python(key)
        except ValidationError as exc:
            errors += _located(exc, "header", "Idempotency-Key")
    raw = await request.body()
    body = None
    if not raw:
        errors.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
    elif not _is_json(request.headers.get("content-type")):
        errors.append(
            {"type": "content_type", "loc": ("body",), "msg": "Content-Type must be JSON"}
        )
    else:
        try:
            body = DecisionRequest.model_validate_json(raw)
        except ValidationError as exc:
            errors += _located(exc, "body")
    if errors or body is None:
        raise RequestValidationError(errors)
    return await _decision(request, principal, body, key)


router.add_api_route(
    "",
    decide,
    methods=["POST"],
    summary="Decide whether the caller may receive these fields for this purpose",
    description=(
        "Evaluated by the Rego bundle in `policies/`; answered only after the decision and its "
        "audit event are committed. A repeated `Idempotency-Key` returns the same decision, "
        "except after a `policy_unavailable` deny, when the retry is decided afresh."
    ),
    response_model=DecisionRead,
    responses=problem_responses(Forbidden, Conflict, InvalidRequest, Unavailable),
)
_ROUTE = cast(APIRoute, router.routes[-1])  # the route just added


async def _serve_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    response = await _serve(Request(scope, receive, send))
    await response(scope, receive, send)


class DecisionEndpoint:
    """Serves `POST /v1/decisions` with `_serve` (see the module docstring); any other
    request goes on to the application. Errors are handled as the application's exception
    middleware handles them (the same handlers, taken from the application on first use);
    anything unhandled goes up to its server-error handler. The request is given the
    route, as routing would, for the metrics and the refusal audit events."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._served: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != _ROUTE.path or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        served = self._served
        if served is None:
            application = scope["app"]
            handlers = {
                key: handler
                for key, handler in application.exception_handlers.items()
                if key not in (500, Exception)
            }
            served = self._served = ExceptionMiddleware(
                _serve_asgi, handlers=handlers, debug=application.debug
            )
        scope["route"] = _ROUTE
        await served(scope, receive, send)


@router.get(
    "/{decision_id}",
    summary="Read a decision back",
    description=(
        "For the requester, the stewards and partner systems of the agreement's parties, "
        "auditors and admins; anyone else gets 404."
    ),
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
