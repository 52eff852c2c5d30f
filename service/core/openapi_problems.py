"""Documents every error as it is sent: RFC 9457 problems, including FastAPI's own 422."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.core.errors import PROBLEM_MEDIA_TYPE

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# Sent by the edge or the framework before a route runs.
_EDGE = {
    "400": "Malformed request body (not UTF-8, or nested too deeply)",
    "413": "Request body too large",
    "429": "Too many requests (see Retry-After)",
}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}}


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for path, operations in spec.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                for code, response in responses.items():
                    if int(code) >= 400:
                        response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}}
                if "422" in responses:
                    responses["422"]["description"] = "Invalid request (problem with `errors`)"
                if path.startswith("/v1/"):
                    for code, description in _EDGE.items():
                        if code != "400" or "requestBody" in operation:
                            responses.setdefault(code, _problem(description))
        schemas = spec.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
