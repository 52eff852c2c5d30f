"""The edge: body size, nesting, rate limit, metrics."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.core.identity import Role, mint_token
from service.core.settings import Settings
from tests.support.api import Api


def test_oversized_bodies_are_413_and_write_nothing(world: Api) -> None:
    limit = world.settings.max_body_bytes
    big = {
        "agreement_id": "x",
        "purpose": "research",
        "fields": ["postcode"],
        "subjects": ["s" * 100] * (limit // 100),
    }
    response = world.post("/v1/decisions", "partner", "uni-lab", json=big)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_deeply_nested_bodies_are_4xx(world: Api) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = world.post(
        "/v1/decisions",
        "partner",
        "uni-lab",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert 400 <= response.status_code < 500


def test_metrics_count_requests_and_decisions(world: Api) -> None:
    world.get("/v1/purposes", "partner", "uni-lab")
    text = world.client.get("/metrics").text
    assert 'accord_http_requests_total{method="GET",route="/v1/purposes",status="200"}' in text
    assert "accord_policy_evaluation_seconds" in text
    assert "ps_" not in text  # no pseudonyms, let alone subject ids


def test_too_many_requests_from_one_client_get_429(limited_app: FastAPI) -> None:
    with TestClient(limited_app) as client:
        statuses = [client.get("/v1/purposes").status_code for _ in range(6)]
        assert statuses[:3] == [401, 401, 401]
        assert statuses[3:] == [429, 429, 429]
        limited = client.get("/v1/purposes")
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["status"] == 429
        assert client.get("/healthz").status_code == 200


def test_made_up_tokens_share_their_address_bucket_and_verified_callers_keep_theirs(
    limited_app: FastAPI, settings: Settings
) -> None:
    """A bucket per made-up token would let a flood of them through (and push real
    clients' buckets out); a caller whose token was verified has a bucket of its own."""
    token = mint_token(settings, subject="svc", role=Role.AUDITOR, organisation_id="accord")
    real = {"Authorization": f"Bearer {token}"}
    with TestClient(limited_app) as client:
        assert client.get("/v1/purposes", headers=real).status_code == 200
        made_up = [
            client.get("/v1/purposes", headers={"Authorization": f"Bearer made-up-{n}"})
            for n in range(6)
        ]
        # The address's burst of 3, less the real token's first request (not yet verified
        # when it was counted).
        assert [r.status_code for r in made_up] == [401, 401, 429, 429, 429, 429]
        assert client.get("/v1/purposes", headers=real).status_code == 200
