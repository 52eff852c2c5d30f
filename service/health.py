"""Liveness and readiness probes (no authentication; they reveal nothing)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from service.core.deps import RuntimeDep
from service.core.errors import Problem
from service.core.migrations import current_revision, head_revision

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    migrations: str
    policy_revision: str


@router.get(
    "/metrics",
    summary="Prometheus metrics (no personal data)",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(runtime: RuntimeDep) -> PlainTextResponse:
    return PlainTextResponse(
        generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


@router.get("/healthz", summary="The process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="The database is reachable and migrated",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "not ready"}, 500: {"model": Problem}},
)
def readyz(runtime: RuntimeDep) -> Readiness | JSONResponse:
    database, migrations = "ok", "current"
    try:
        with runtime.db.connect() as connection:
            connection.execute(text("SELECT 1"))
        if current_revision(runtime.db) != head_revision(runtime.settings.database_url):
            migrations = "pending"
    except Exception:  # readiness reports, it does not raise
        database, migrations = "unreachable", "unknown"
    body = Readiness(
        status="ready" if (database, migrations) == ("ok", "current") else "not_ready",
        database=database,
        migrations=migrations,
        policy_revision=runtime.policy.revision,
    )
    if body.status != "ready":
        return JSONResponse(body.model_dump(), status_code=503)
    return body
