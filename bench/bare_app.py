"""The benchmark's baseline: a bare FastAPI endpoint of the decision endpoint's shape.

It validates the same request body (`DecisionRequest`, the service's own model), accepts
the same bearer header without checking it, and returns a constant JSON document the
size of a single-subject decision. No database, no policy, no audit log: the cost of the
framework alone. Run with ``uvicorn bench.bare_app:app`` from the repository root.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header

from service.decisions.schemas import DecisionRequest

CONSTANT: dict[str, Any] = {
    "decision_id": "00000000-0000-4000-8000-000000000000",
    "allow": True,
    "reasons": [],
    "obligations": {
        "permitted_fields": ["date_of_birth", "diagnosis_code", "postcode"],
        "dropped_fields": [],
        "pseudonymise": True,
        "retention_days": 365,
        "min_cohort": 10,
        "ethics_conditions": [
            "publish only aggregate findings",
            "delete linkage keys after study",
        ],
    },
    "subjects": [
        {
            "index": 0,
            "subject": "ps_" + "0" * 64,
            "allow": True,
            "reasons": [],
        }
    ],
    "agreement_id": "00000000-0000-4000-8000-000000000000",
    "agreement_version": 1,
    "purpose": "research.public_health",
    "policy_revision": "sha256:00000000000000000000000000000000",
    "engine": "bare",
    "decided_at": "2026-01-01T00:00:00.000000Z",
    "audit_seq": 0,
}

app = FastAPI(title="Accord benchmark baseline", openapi_url=None, docs_url=None)


@app.post("/v1/decisions")
async def decide(
    body: DecisionRequest,
    authorization: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    """Validate the body, ignore the token, answer a constant."""
    return CONSTANT


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
