"""Domain errors and their RFC 9457 rendering.

    AccordError                  status, stable ``type`` URI, title
    ├── Unauthenticated          401  no or invalid bearer token
    ├── Forbidden                403  role or organisation may not do this
    ├── NotFound                 404  no such object, or not visible to the caller
    ├── Conflict                 409  the object's state forbids the change
    │   └── InvalidTransition    409  illegal lifecycle transition
    ├── InvalidRequest           422  well-formed but semantically wrong input
    └── Unavailable              503  a dependency (database, policy engine) failed

Every error leaves as ``application/problem+json``; nothing internal (stack traces, SQL,
policy source, secrets) is ever placed in a problem body.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://accord.example/problems/"
log = logging.getLogger("accord.errors")


class AccordError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    @classmethod
    def type_uri(cls) -> str:
        return TYPE_BASE + cls.slug


class Unauthenticated(AccordError):
    status, slug, title = 401, "unauthenticated", "Authentication required"


class Forbidden(AccordError):
    status, slug, title = 403, "forbidden", "Not allowed"


class NotFound(AccordError):
    status, slug, title = 404, "not-found", "Not found"


class Conflict(AccordError):
    status, slug, title = 409, "conflict", "Conflict with the current state"


class InvalidTransition(Conflict):
    slug, title = "invalid-transition", "Illegal lifecycle transition"


class InvalidRequest(AccordError):
    status, slug, title = 422, "invalid-request", "Invalid request"


class Unavailable(AccordError):
    status, slug, title = 503, "unavailable", "Service temporarily unavailable"


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="stable URI identifying the problem type")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        None, description="per-field validation errors (422)"
    )


def problem_responses(*errors: type[AccordError]) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry of a route that may raise these errors."""
    out: dict[int | str, dict[str, Any]] = {}
    documented: tuple[type[AccordError], ...] = (Unauthenticated, *errors)
    for error in documented:
        out.setdefault(
            error.status,
            {"model": Problem, "description": error.title},
        )
    return out


def problem(
    request: Request,
    status: int,
    type_uri: str,
    title: str,
    detail: str | None,
    extensions: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_uri,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
    }
    if extensions:
        body.update(extensions)
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=dict(headers or {})
    )


def _location(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


RefusalHook = Callable[[Request, AccordError], Awaitable[None]]


def _methods_for(request: Request) -> list[str]:
    """Every method the API offers on this path, from its OpenAPI description."""
    paths = request.app.openapi().get("paths", {})
    path = request.url.path
    if path in paths:  # a literal path wins over templates, as in routing
        return sorted(m.upper() for m in paths[path])
    methods: set[str] = set()
    for template, operations in paths.items():
        pattern = "^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            methods.update(m.upper() for m in operations)
    return sorted(methods)


def install_error_handlers(app: FastAPI, on_refusal: RefusalHook | None = None) -> None:
    """Render every error as a problem; `on_refusal` hears of each 403 and 404."""

    @app.exception_handler(AccordError)
    async def _accord_error(request: Request, exc: AccordError) -> JSONResponse:
        if on_refusal is not None and exc.status in (403, 404):
            await on_refusal(request, exc)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return problem(
            request, exc.status, exc.type_uri(), exc.title, exc.detail, exc.extensions, headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"location": _location(err.get("loc", ())), "message": err.get("msg", "invalid")}
            for err in exc.errors()
        ]
        return problem(
            request,
            422,
            TYPE_BASE + "validation",
            "Request validation failed",
            "; ".join(f"{e['location']}: {e['message']}" for e in errors[:5]),
            {"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first matching route only.
            headers["Allow"] = ", ".join(_methods_for(request))
        return problem(
            request,
            exc.status_code,
            TYPE_BASE + f"http-{exc.status_code}",
            str(exc.detail) if exc.status_code < 500 else "Server error",
            None,
            headers=headers,
        )

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> JSONResponse:
        return problem(request, 400, TYPE_BASE + "too-deep", "Request too deeply nested", None)

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", type(exc.orig).__name__)
        return problem(
            request, 503, Unavailable.type_uri(), Unavailable.title, "database unavailable"
        )

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("database error: %s", type(exc).__name__)
        return problem(request, 503, Unavailable.type_uri(), Unavailable.title, "database error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem(request, 500, AccordError.type_uri(), AccordError.title, None)
