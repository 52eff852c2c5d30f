"""The decision endpoint answers what FastAPI's own request handling would.

`POST /v1/decisions` is served by `DecisionEndpoint`, which authenticates and validates the
request itself, without FastAPI's routing (see service/decisions/router.py). Here the same
endpoint function is also mounted where FastAPI's own handling serves it, and both get the
same requests: well-formed or not, with or without a valid token, they must get the same
status, problem type and error locations. One difference is intended, and pinned below: a
caller who is not authenticated gets 401 before anything about the body is said.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from service.app import create_app
from service.core.settings import Settings
from service.decisions.router import decide
from tests.support.api import Api
from tests.support.clock import MutableClock

REFERENCE = "/v1/decisions-as-fastapi-would"


@pytest.fixture
def app(settings: Settings, clock: MutableClock) -> FastAPI:
    app = create_app(settings, clock=clock)
    app.add_api_route(REFERENCE, decide, methods=["POST"])  # FastAPI's own handling
    return app


def body(agreement_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "agreement_id": agreement_id,
        "purpose": "research",
        "fields": ["postcode"],
        "subjects": ["subject-1"],
        **overrides,
    }


def outcome(response: Any) -> tuple[int, str | None, list[str]]:
    document = response.json()
    locations = sorted(e["location"] for e in document.get("errors", []))
    return response.status_code, document.get("type"), locations


def both(world: Api, role: str | None, **request: Any) -> tuple[Any, Any]:
    headers = dict(request.pop("headers", {}))
    if role is not None:
        headers["Authorization"] = f"Bearer {world.token(role, 'uni-lab')}"
    served = world.client.post("/v1/decisions", headers=headers, **request)
    reference = world.client.post(REFERENCE, headers=headers, **request)
    return served, reference


CASES: list[tuple[str, str | None, dict[str, Any]]] = [
    ("no token", None, {"json": "BODY"}),
    ("not a partner", "steward", {"json": "BODY"}),
    ("not bearer", None, {"json": "BODY", "headers": {"Authorization": "Basic dXNlcjpwYXNz"}}),
    ("no body", "partner", {}),
    ("not JSON", "partner", {"content": b"id=x", "headers": {"Content-Type": "text/plain"}}),
    ("no content type", "partner", {"content": b'{"agreement_id": "x"}'}),
    ("JSON not an object", "partner", {"json": ["x"]}),
    ("unknown field", "partner", {"json": {"allow": True}}),
    ("both kinds", "partner", {"json": {"aggregate": {"cohort_size": 50}}}),
    ("no kind", "partner", {"json": {"subjects": None}}),
    ("bad field names", "partner", {"json": {"fields": ["Postcode!", "x" * 300]}}),
    ("empty key", "partner", {"json": "BODY", "headers": {"Idempotency-Key": ""}}),
    ("long key", "partner", {"json": "BODY", "headers": {"Idempotency-Key": "k" * 201}}),
    ("key and body", "partner", {"json": {"purpose": 7}, "headers": {"Idempotency-Key": ""}}),
    ("too many subjects", "partner", {"json": {"subjects": ["s"] * 10_001}}),
    ("agreement id not a UUID", "partner", {"json": {"agreement_id": "agreement-1"}}),
    ("NUL in the agreement id", "partner", {"json": {"agreement_id": "\u0000" * 36}}),
    ("allowed", "partner", {"json": "BODY"}),
    ("+json", "partner", {"content": b"BODY", "headers": {"Content-Type": "application/x+json"}}),
]


@pytest.mark.parametrize(("role", "request_"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_answers_as_fastapi_would(
    world: Api, agreement: str, role: str | None, request_: dict[str, Any]
) -> None:
    request = dict(request_)
    if request.get("json") == "BODY":
        request["json"] = body(agreement)
    elif isinstance(request.get("json"), dict):
        request["json"] = {**body(agreement), **request["json"]}
    if request.get("content") == b"BODY":
        request["content"] = str(body(agreement)).replace("'", '"').encode()
    served, reference = both(world, role, **request)
    assert outcome(served) == outcome(reference), (served.text, reference.text)
    if served.status_code == 200:
        assert served.json()["allow"] == reference.json()["allow"] is True
        assert served.json()["decision_id"] != reference.json()["decision_id"]


@pytest.mark.parametrize("agreement_id", ["agreement-1", "\u0000" * 36, "x" * 36])
def test_an_agreement_id_that_is_not_a_uuid_is_refused(world: Api, agreement_id: str) -> None:
    """Before it reaches the read that decides a whole group of requests."""
    response = world.post("/v1/decisions", "partner", "uni-lab", json=body(agreement_id))
    assert response.status_code == 422
    assert [e["location"] for e in response.json()["errors"]] == ["body.agreement_id"]


def test_a_malformed_body_from_an_unknown_caller_gets_401(world: Api) -> None:
    """FastAPI reads the body before it solves dependencies, and would answer 422 here."""
    headers = {"Content-Type": "application/json"}
    served, reference = both(world, None, content=b"{not json", headers=headers)
    assert served.status_code == 401
    assert reference.status_code == 422


def test_malformed_json_is_a_422_at_the_body(world: Api) -> None:
    headers = {"Content-Type": "application/json"}
    served, reference = both(world, "partner", content=b'{"agreement_id": ', headers=headers)
    assert served.status_code == reference.status_code == 422
    assert served.json()["type"] == reference.json()["type"]
    assert [e["location"] for e in served.json()["errors"]] == ["body"]


def test_a_streamed_body_over_the_limit_is_413(world: Api) -> None:
    """No Content-Length to refuse at the edge: the body is counted as it is read."""
    limit = world.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        yield b'{"subjects": ["'
        for _ in range(limit // 65_536 + 2):
            yield b"s" * 65_536
        yield b'"]}'

    headers = {
        "Authorization": f"Bearer {world.token('partner', 'uni-lab')}",
        "Content-Type": "application/json",
    }
    response = world.client.post("/v1/decisions", headers=headers, content=chunks())
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
