"""Deny reasons, the policy input/output contract, the batch limit and concurrent decisions,
through the HTTP API, on both policy engines and both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Settings
from service.decisions.engines import PolicyEngine
from tests.support.api import Api
from tests.support.clock import MutableClock
from tests.support.decisions import codes, decide

SCHEMAS = Path(__file__).resolve().parents[2] / "policies" / "schemas"
UNKNOWN_AGREEMENT = "00000000-0000-0000-0000-000000000000"


def outcomes(decision: dict[str, Any]) -> list[tuple[bool, list[str]]]:
    """Each subject's (allow, reason codes), in request order."""
    return [(s["allow"], [r["code"] for r in s["reasons"]]) for s in decision["subjects"]]


@cache
def validator(name: str) -> Any:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def assert_valid(name: str, document: Any) -> None:
    errors = sorted(validator(name).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def policy_output(answer: dict[str, Any]) -> dict[str, Any]:
    """The part of a stored answer that is the policy's output (the answer adds the
    decision's id, agreement, revision, … and each subject's index)."""
    return {
        "allow": answer["allow"],
        "reasons": answer["reasons"],
        "obligations": answer["obligations"],
        "subjects": [
            {"subject": s["subject"], "allow": s["allow"], "reasons": s["reasons"]}
            for s in answer["subjects"]
        ],
    }


# --- each deny reason --------------------------------------------------------------------


def test_a_refused_consent_denies_its_subject(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    recorded = world.consent(clock.now(), "refuser", status="refused")
    assert recorded["status"] == "refused"
    decision = decide(world, agreement, subjects=["subject-1", "refuser"])
    assert decision["allow"] is False
    assert codes(decision) == ["some_subjects_denied"]
    assert outcomes(decision) == [(True, []), (False, ["consent_refused"])]
    assert decision["subjects"][1]["subject"] == recorded["subject_pseudonym"]


def test_a_consent_starting_later_is_not_yet_valid(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    starts = clock.now() + timedelta(days=1)
    world.consent(clock.now(), "later", valid_from=starts.isoformat())
    decision = decide(world, agreement, subjects=["later", "subject-1"])
    assert decision["allow"] is False
    assert codes(decision) == ["some_subjects_denied"]
    assert outcomes(decision) == [(False, ["consent_not_yet_valid"]), (True, [])]
    clock.advance(timedelta(days=1))
    started = decide(world, agreement, subjects=["later"])
    assert (started["allow"], codes(started), outcomes(started)) == (True, [], [(True, [])])


def test_an_agreement_before_its_validity_window_is_not_yet_valid(
    world: Api, clock: MutableClock
) -> None:
    """An active agreement is always inside its window (activation refuses otherwise), so
    the agreement decided under is one approved for a window that has not opened."""
    now = clock.now()
    agreement_id = world.draft(
        now,
        valid_from=(now + timedelta(days=7)).isoformat(),
        purposes=[{"purpose": "research", "fields": ["postcode"]}],
    )
    path = world.version_path(agreement_id)
    world.ok(world.post(f"{path}/submit", "steward", "uni-lab"))
    assert world.approve_all(agreement_id)["status"] == "approved"
    assert world.post(f"{path}/activate", "steward", "uni-lab").status_code == 409
    world.consent(now, "subject-1")
    decision = decide(world, agreement_id)
    assert decision["allow"] is False
    assert codes(decision) == ["agreement_not_active", "agreement_not_yet_valid"]
    assert decision["agreement_version"] == 1
    assert outcomes(decision) == [(False, ["request_denied"])]


def test_sensitive_fields_without_any_review_are_denied(world: Api, clock: MutableClock) -> None:
    """Every party approved, but no ethics review was recorded: the agreement stays
    pending, and a sensitive field it names is denied for the missing review."""
    now = clock.now()
    agreement_id = world.draft(
        now, purposes=[{"purpose": "research", "fields": ["diagnosis_code", "postcode"]}]
    )
    world.ok(world.post(f"{world.version_path(agreement_id)}/submit", "steward", "uni-lab"))
    assert world.approve_all(agreement_id)["status"] == "pending_approval"
    world.consent(now, "patient")
    decision = decide(world, agreement_id, fields=["diagnosis_code"], subjects=["patient"])
    assert decision["allow"] is False
    assert codes(decision) == ["agreement_not_active", "ethics_review_missing"]
    assert decision["reasons"][1]["message"] == (
        "An ethics review is required for sensitive fields: diagnosis_code"
    )
    assert decision["obligations"]["ethics_conditions"] == []
    assert outcomes(decision) == [(False, ["request_denied"])]
    # The review is needed for the sensitive field only.
    plain = decide(world, agreement_id, fields=["postcode"], subjects=["patient"])
    assert codes(plain) == ["agreement_not_active"]


def test_a_request_level_denial_denies_every_subject_with_request_denied(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    world.consent(clock.now(), "refuser", status="refused")
    world.ok(
        world.post(
            f"/v1/agreements/{agreement}/suspend",
            "steward",
            "health-trust",
            json={"reason": "incident"},
        )
    )
    decision = decide(world, agreement, subjects=["subject-1", "nobody", "refuser"])
    assert decision["allow"] is False
    assert codes(decision) == ["agreement_suspended"]
    assert outcomes(decision) == [
        (False, ["request_denied"]),
        (False, ["consent_missing", "request_denied"]),
        (False, ["consent_refused", "request_denied"]),
    ]


# --- the policy contract -------------------------------------------------------------------


def test_stored_inputs_and_answers_follow_the_policy_schemas(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    now = clock.now()
    world.consent(now, "subject-2")
    world.consent(now, "refuser", status="refused")
    world.consent(now, "later", valid_from=(now + timedelta(days=1)).isoformat())
    made = {
        "one allowed": decide(world, agreement),
        "one denied by consent": decide(world, agreement, subjects=["refuser"]),
        "batch": decide(
            world,
            agreement,
            subjects=["subject-1", "subject-2", "refuser", "later", "nobody", "subject-1"],
        ),
        "aggregate": decide(world, agreement, aggregate={"cohort_size": 25}),
        "unknown agreement": decide(world, UNKNOWN_AGREEMENT),
        "unknown purpose and field": decide(
            world, agreement, purpose="astrology.horoscopes", fields=["postcode", "shoe_size"]
        ),
    }
    assert {name: d["allow"] for name, d in made.items()} == {
        "one allowed": True,
        "one denied by consent": False,
        "batch": False,
        "aggregate": True,
        "unknown agreement": False,
        "unknown purpose and field": False,
    }
    for name, decision in made.items():
        path = f"/v1/decisions/{decision['decision_id']}"
        stored = world.ok(world.get(f"{path}/input", "auditor", "council"))
        assert stored["decision_id"] == decision["decision_id"], name
        document = stored["input"]
        assert_valid("decision_input", document)
        assert "group" not in document, name
        assert len(document["request"]["subjects"]) == len(decision["subjects"]), name
        answer = world.ok(world.get(path, "auditor", "council"))
        assert answer == decision, name
        assert_valid("decision_output", policy_output(answer))
    assert made["aggregate"]["subjects"] == []
    assert made["unknown agreement"]["subjects"][0]["reasons"][0]["code"] == "request_denied"


# --- batch size ----------------------------------------------------------------------------


def test_a_batch_of_ten_thousand_subjects_is_decided_in_request_order(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    consented = {1, 2, 5_000, 10_000}
    for n in consented - {1}:
        world.consent(clock.now(), f"subject-{n}")
    subjects = [f"subject-{n}" for n in range(1, 10_001)]
    decision = decide(world, agreement, subjects=subjects)
    assert decision["allow"] is False
    assert codes(decision) == ["some_subjects_denied"]
    assert [s["index"] for s in decision["subjects"]] == list(range(10_000))
    assert outcomes(decision) == [
        (True, []) if n in consented else (False, ["consent_missing"]) for n in range(1, 10_001)
    ]
    pseudonyms = [s["subject"] for s in decision["subjects"]]
    assert len(set(pseudonyms)) == 10_000
    for n in (1, 5_000, 10_000):
        alone = decide(world, agreement, subjects=[f"subject-{n}"])
        assert alone["subjects"][0]["subject"] == pseudonyms[n - 1]


def test_a_batch_of_ten_thousand_and_one_subjects_is_refused(world: Api, agreement: str) -> None:
    body = {
        "agreement_id": agreement,
        "purpose": "research.public_health",
        "fields": ["postcode"],
        "subjects": [f"subject-{n}" for n in range(1, 10_002)],
    }
    response = world.post("/v1/decisions", "partner", "uni-lab", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 422


# --- concurrency -----------------------------------------------------------------------------


@pytest.fixture
def threaded(settings: Settings, clock: MutableClock, policy_engine: PolicyEngine) -> Iterator[Api]:
    """The API of an app with four decision threads, organisations registered."""
    several = settings.model_copy(update={"decision_threads": 4})
    app = create_app(several, clock=clock, policy=policy_engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        api = Api(client, several)
        api.create_orgs()
        yield api


def test_concurrent_mixed_decisions_on_several_threads_each_get_their_own_answer(
    threaded: Api, clock: MutableClock
) -> None:
    now = clock.now()
    agreement_id = threaded.active(now, purposes=[{"purpose": "research", "fields": ["postcode"]}])
    # Even subjects consented, odd ones refused: every subject's pseudonym is known.
    pseudonym = {
        n: threaded.consent(now, f"subject-{n}", status="given" if n % 2 == 0 else "refused")[
            "subject_pseudonym"
        ]
        for n in range(20)
    }

    def expected(n: int) -> tuple[bool, list[str], str, bool, list[str]]:
        subject, too_much = n % 20, n % 7 == 0
        consented = subject % 2 == 0
        subject_codes = [] if consented else ["consent_refused"]
        if too_much:
            reasons, subject_codes = ["fields_not_permitted"], [*subject_codes, "request_denied"]
        else:
            reasons = [] if consented else ["some_subjects_denied"]
        allow = consented and not too_much
        return allow, reasons, pseudonym[subject], allow, subject_codes

    def run(n: int) -> tuple[tuple[bool, list[str], str, bool, list[str]], str]:
        fields = ["postcode", "email"] if n % 7 == 0 else ["postcode"]
        got = decide(threaded, agreement_id, subjects=[f"subject-{n % 20}"], fields=fields)
        (subject,) = got["subjects"]
        reasons = [r["code"] for r in subject["reasons"]]
        answer = (got["allow"], codes(got), subject["subject"], subject["allow"], reasons)
        return answer, got["decision_id"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(run, range(200)))
    assert [answer for answer, _ in results] == [expected(n) for n in range(200)]
    assert len({decision_id for _, decision_id in results}) == 200
    assert sum(answer[0] for answer, _ in results) == 85
