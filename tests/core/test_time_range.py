"""Times in requests: RFC 3339 with an offset, and a year from 1970 to 2199 as written.

Outside that range the service could not hold them: converting to UTC overflowed (a 500),
and a time past 2262 does not fit the policy input's int64 nanoseconds (every later
submission failed with 503). They are refused as 422 problems at the field instead.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from tests.support.api import Api
from tests.support.clock import MutableClock

OUT_OF_RANGE = [
    "0001-01-01T00:30:00+01:00",  # year 0 in UTC: converting overflowed
    "1969-12-31T23:59:59Z",
    "1969-12-31T23:30:00-01:00",  # 1970 in UTC, but not as written
    "2200-01-01T00:00:00Z",
    "2600-01-01T00:00:00Z",  # past int64 nanoseconds
    "9999-12-31T23:00:00-05:00",  # year 10000 in UTC: converting overflowed
]


def assert_422_at(response: Any, location: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert location in [e["location"] for e in response.json()["errors"]]


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
def test_out_of_range_times_are_422_everywhere(
    world: Api, clock: MutableClock, moment: str
) -> None:
    now = clock.now()
    for field in ("valid_from", "valid_until"):
        response = world.post(
            "/v1/agreements", "steward", "uni-lab", json=world.terms(now, **{field: moment})
        )
        assert_422_at(response, f"body.{field}")

    consent = {
        "subject_id": "subject-1",
        "purposes": ["research"],
        "categories": ["health"],
        "valid_until": moment,
        "evidence": {"method": "web_form", "notice_version": "v1", "collected_at": moment},
    }
    response = world.post("/v1/consents", "partner", "health-trust", json=consent)
    assert_422_at(response, "body.valid_until")
    assert_422_at(response, "body.evidence.collected_at")

    agreement_id = world.draft(now)
    world.ok(world.post(f"{world.version_path(agreement_id)}/submit", "steward", "uni-lab"))
    review = {
        "outcome": "approved",
        "reference": "REB-1",
        "valid_from": (now - timedelta(days=1)).isoformat(),
        "valid_until": moment,
    }
    path = f"{world.version_path(agreement_id)}/ethics-reviews"
    assert_422_at(
        world.post(path, "ethics_reviewer", "ethics-board", json=review), "body.valid_until"
    )

    for route in ("events", "counts", "export"):
        for bound in ("from", "to"):
            response = world.get(f"/v1/audit/{route}", "auditor", "council", params={bound: moment})
            assert_422_at(response, f"query.{bound}")


@pytest.mark.parametrize("moment", [4102444800, "1700000000", "2030-01-01 00:00:00+00:00"])
def test_times_not_written_in_rfc_3339_are_422(
    world: Api, clock: MutableClock, moment: Any
) -> None:
    response = world.post(
        "/v1/agreements", "steward", "uni-lab", json=world.terms(clock.now(), valid_until=moment)
    )
    assert_422_at(response, "body.valid_until")


def test_times_at_the_edges_of_the_range_are_taken(world: Api, clock: MutableClock) -> None:
    created = world.post(
        "/v1/agreements",
        "steward",
        "uni-lab",
        json=world.terms(
            clock.now(), valid_from="1970-01-01T01:00:00+01:00", valid_until="2199-12-31T23:59:59Z"
        ),
    )
    version = world.ok(
        world.get(world.version_path(world.ok(created, 201)["id"]), "steward", "uni-lab")
    )
    assert version["valid_from"].startswith("1970-01-01T00:00:00")  # handed on in UTC
    late = world.terms(clock.now(), valid_until="2199-12-31T23:00:00-05:00")  # 2200 in UTC
    assert world.post("/v1/agreements", "steward", "uni-lab", json=late).status_code == 201
    events = world.get(
        "/v1/audit/events", "auditor", "council", params={"from": "1970-01-01T00:00:00Z"}
    )
    assert events.status_code == 200


def test_an_export_whose_first_read_fails_is_a_problem_not_a_short_200(
    world: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(*_: Any, **__: Any) -> Any:
        raise OperationalError("SELECT", {}, Exception("connection lost"))
        yield  # a generator, as the real one

    monkeypatch.setattr("service.audit.search.export_pages", failing)
    response = world.get("/v1/audit/export", "auditor", "council")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
