"""Asking for decisions in the HTTP tests."""

from __future__ import annotations

from typing import Any

from tests.support.api import Api


def decide(api: Api, agreement_id: str, org: str = "uni-lab", **body: Any) -> Any:
    """A partner system of `org` asks for `postcode` of subject-1 for public-health research,
    unless `body` says otherwise; the decision (the answer must be 200)."""
    payload = {
        "agreement_id": agreement_id,
        "purpose": "research.public_health",
        "fields": ["postcode"],
        **body,
    }
    if "aggregate" not in payload:
        payload.setdefault("subjects", ["subject-1"])
    return api.ok(api.post("/v1/decisions", "partner", org, json=payload))


def codes(decision: dict[str, Any]) -> list[str]:
    """A decision's (or a subject result's) reason codes, in order."""
    return [r["code"] for r in decision["reasons"]]
