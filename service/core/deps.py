"""FastAPI dependencies: the request's transaction, the caller and role guards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.core.context import Runtime
from service.core.database import transaction
from service.core.errors import Forbidden, Unauthenticated
from service.core.identity import Actor, Principal, Role


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(request: Request, runtime: RuntimeDep) -> Iterator[Session]:
    """The request's one transaction; it commits before the response is sent.

    Reads (GET) run in a read-only transaction, which on SQLite does not take the write lock.
    """
    read_only = request.method in ("GET", "HEAD")
    yield from transaction(runtime.read_sessions if read_only else runtime.sessions)


SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="JWT issued for Accord")


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified caller; runs on the event loop (no thread hop) unless a lookup is due:
    a token not seen before, where verifying it may fetch the JWKS, or an organisation not
    looked up lately. (The runtime straight from the app: every dependency FastAPI solves
    costs per request.)"""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("a bearer token is required")
    runtime: Runtime = request.app.state.runtime
    verifier, token = runtime.verifier, credentials.credentials
    principal = verifier.remembered(token)
    if principal is None:
        if verifier.may_fetch:
            principal = await run_in_threadpool(verifier.verify, token)
        else:
            principal = verifier.verify(token)
    enabled = runtime.organisations.enabled(principal.organisation_id)
    if enabled is None:
        enabled = await run_in_threadpool(runtime.organisations.refresh, principal.organisation_id)
    if not enabled:
        raise Unauthenticated("the token's organisation is unknown or disabled")
    request.state.principal = principal  # for the record of refused attempts
    if principal.role is Role.ADMIN and principal.organisation_id != runtime.settings.operator_org:
        # Administration is the operator's: an admin token of any other organisation (one
        # its own identity provider issued, say) administers nothing.
        raise Forbidden("the admin role belongs to the operator organisation only")
    return principal


class RoleGuard:
    """Admits only the listed roles; routes declare it so the rule table is inspectable."""

    def __init__(self, *allowed: Role) -> None:
        self.allowed = frozenset(allowed)

    async def __call__(self, principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in self.allowed:
            raise Forbidden(f"role {principal.role.value} may not use this operation")
        return principal


def roles(*allowed: Role) -> RoleGuard:
    return RoleGuard(*allowed)


async def authenticate(request: Request, guard: RoleGuard) -> Principal:
    """What a `Depends(guard)` parameter resolves to, for a route that reads its own
    request (the decision endpoint): the same bearer scheme, verification and role check."""
    return await guard(await get_principal(request, await _bearer(request)))


ANY_ROLE = tuple(Role)

__all__ = ["Actor", "RuntimeDep", "SessionDep", "request_id", "roles"]


async def request_id(request: Request) -> str | None:
    value: str | None = getattr(request.state, "request_id", None)
    return value
