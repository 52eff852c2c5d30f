"""Structured logs carry request ids and never personal data or tokens."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from service.core.observability import JsonFormatter
from tests.support.api import Api
from tests.support.clock import MutableClock


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("accord")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_logs_are_json_with_request_ids_and_nothing_personal(
    world: Api, clock: MutableClock, log_lines: io.StringIO
) -> None:
    agreement_id = world.active(clock.now())
    consent = world.consent(clock.now(), "NHS-0000-SECRET-SUBJECT")
    token = world.token("partner", "uni-lab")
    response = world.client.post(
        "/v1/decisions",
        headers={"Authorization": f"Bearer {token}", "X-Request-ID": "trace-logs-1"},
        json={
            "agreement_id": agreement_id,
            "purpose": "research.public_health",
            "fields": ["postcode"],
            "subjects": ["NHS-0000-SECRET-SUBJECT"],
        },
    )
    assert response.status_code == 200
    text = log_lines.getvalue()
    entries = [json.loads(line) for line in text.splitlines()]
    assert any(e.get("request_id") == "trace-logs-1" and e.get("status") == 200 for e in entries)
    assert "NHS-0000-SECRET-SUBJECT" not in text
    assert consent["subject_pseudonym"] not in text
    assert token not in text
    assert "postcode" not in text
