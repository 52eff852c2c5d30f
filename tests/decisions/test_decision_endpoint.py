"""`DecisionEndpoint` serves `POST /v1/decisions` below the edge middleware, without
FastAPI's routing (service/decisions/router.py). What the edge and routing give every
other request must still hold for it: the request id, the rate limit, the route in the
metrics and in refusal audit events, the application's problem for an unexpected failure;
and every other request on the path still reaches the router."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.decisions import service
from tests.support.api import Api

UNKNOWN_AGREEMENT = "00000000-0000-4000-8000-000000000000"


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "agreement_id": UNKNOWN_AGREEMENT,
        "purpose": "research",
        "fields": ["postcode"],
        "subjects": ["subject-1"],
        **overrides,
    }


def test_decision_requests_are_counted_under_their_route(world: Api) -> None:
    assert world.post("/v1/decisions", "partner", "uni-lab", json=body()).status_code == 200
    assert world.post("/v1/decisions", "steward", "uni-lab", json=body()).status_code == 403
    text = world.client.get("/metrics").text
    for status in (200, 403):
        counted = (
            f'accord_http_requests_total{{method="POST",route="/v1/decisions",status="{status}"}}'
        )
        assert f"{counted} 1.0" in text
    assert 'route="unmatched"' not in text


def test_a_refused_decision_request_is_audited_under_its_route(world: Api) -> None:
    refused = world.post("/v1/decisions", "steward", "uni-lab", json=body())
    assert refused.status_code == 403
    events = world.ok(
        world.get("/v1/audit/events", "auditor", "council", params={"action": "access.refused"})
    )["items"]
    assert [(e["resource"]["id"], e["actor"]["organisation"]) for e in events] == [
        ("/v1/decisions", "uni-lab")
    ]
    assert events[0]["details"] == {"method": "POST", "status": 403}


def test_decision_answers_carry_the_request_id(world: Api) -> None:
    supplied = {"X-Request-ID": "req-decision-0001"}
    answered = world.post("/v1/decisions", "partner", "uni-lab", json=body(), headers=supplied)
    invalid = world.post("/v1/decisions", "partner", "uni-lab", json={}, headers=supplied)
    assert (answered.status_code, invalid.status_code) == (200, 422)
    assert (
        answered.headers["x-request-id"] == invalid.headers["x-request-id"] == "req-decision-0001"
    )
    assert invalid.json()["request_id"] == "req-decision-0001"


def test_an_unexpected_failure_is_the_applications_500_problem(
    world: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "decide_group", broken)
    response = world.post("/v1/decisions", "partner", "uni-lab", json=body())
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert (problem["status"], problem["title"]) == (500, "Internal error")
    assert "a bug" not in response.text


def test_other_requests_on_the_path_still_reach_the_router(world: Api) -> None:
    listed = world.get("/v1/decisions", "partner", "uni-lab")
    assert listed.status_code == 405
    assert listed.headers["allow"] == "POST"
    decided = world.ok(world.post("/v1/decisions", "partner", "uni-lab", json=body()))
    read = world.ok(world.get(f"/v1/decisions/{decided['decision_id']}", "partner", "uni-lab"))
    assert read["decision_id"] == decided["decision_id"]


def test_decision_requests_are_rate_limited(limited_app: FastAPI) -> None:
    with TestClient(limited_app) as client:
        statuses = [client.post("/v1/decisions", json=body()).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
