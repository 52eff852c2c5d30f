"""Consents recorded by partner systems, through the HTTP API, on both databases.

A consent is held only under the subject's keyed pseudonym; every change is an event appended
to a history the database refuses to rewrite.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import MetaData, func, select, text
from sqlalchemy.exc import DBAPIError

from service.app import run_sweep
from service.core.context import Runtime
from tests.support.api import Api
from tests.support.clock import MutableClock

PSEUDONYM = re.compile(r"^ps_[0-9a-f]{64}$")
RAW_SUBJECT = "NHS-943-476-5919-raw-subject"
RAW_GUARDIAN = "GUARDIAN-RAW-7781-parent"
COUNTED = ("consents", "consent_events", "audit_events")


def _runtime(world: Api) -> Runtime:
    runtime: Runtime = world.client.app.state.runtime  # type: ignore[attr-defined]
    return runtime


def _dump(world: Api) -> str:
    """Every row of every table, as text (the raw-id leak detector)."""
    runtime = _runtime(world)
    metadata = MetaData()
    metadata.reflect(bind=runtime.db)
    chunks: list[str] = []
    with runtime.read_sessions() as session:
        for name in sorted(metadata.tables):
            rows = session.execute(select(metadata.tables[name])).all()
            chunks.append(f"{name}: {[tuple(row) for row in rows]!r}")
    return "\n".join(chunks)


def _counts(world: Api) -> dict[str, int]:
    """Rows written, apart from the audit log's record of refused attempts (issue 5)."""
    runtime = _runtime(world)
    metadata = MetaData()
    metadata.reflect(bind=runtime.db, only=COUNTED)
    counts = {}
    with runtime.read_sessions() as session:
        for name in COUNTED:
            table = metadata.tables[name]
            query = select(func.count()).select_from(table)
            if name == "audit_events":
                query = query.where(table.c.action != "access.refused")
            counts[name] = int(session.execute(query).scalar_one())
    return counts


def _history(world: Api, role: str, org: str, subject: str) -> Any:
    return world.ok(world.post("/v1/consents/history", role, org, json={"subject_id": subject}))


def _evidence(now: datetime) -> dict[str, str]:
    return {"method": "paper_form", "notice_version": "v2", "collected_at": now.isoformat()}


def _assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


# --- recording -----------------------------------------------------------------------------


def test_record_stores_only_a_stable_pseudonym_never_the_raw_ids(
    world: Api, clock: MutableClock
) -> None:
    now = clock.now()
    response = world.post(
        "/v1/consents",
        "partner",
        "health-trust",
        json={
            "subject_id": RAW_SUBJECT,
            "purposes": ["research.public_health"],
            "categories": ["health", "minors"],
            "evidence": {**_evidence(now), "reference": "form-17"},
            "subject_is_minor": True,
            "guardian": {"guardian_id": RAW_GUARDIAN, "relationship": "parent"},
        },
    )
    created = world.ok(response, 201)
    assert RAW_SUBJECT not in response.text
    assert RAW_GUARDIAN not in response.text
    pseudonym = created["subject_pseudonym"]
    assert PSEUDONYM.match(pseudonym), pseudonym
    assert created["status"] == "given"
    assert created["revision"] == 1
    assert created["controller_org"] == "health-trust"
    guardian_pseudonym = created["guardian"]["guardian_pseudonym"]
    assert PSEUDONYM.match(guardian_pseudonym), created["guardian"]
    assert guardian_pseudonym != pseudonym
    assert created["guardian"]["relationship"] == "parent"

    # The same subject gets the same pseudonym (also when another controller records it);
    # another subject gets another one.
    again = world.consent(now, RAW_SUBJECT)
    elsewhere = world.consent(now, RAW_SUBJECT, org="council")
    other = world.consent(now, RAW_SUBJECT + "-2")
    assert again["subject_pseudonym"] == pseudonym
    assert elsewhere["subject_pseudonym"] == pseudonym
    assert other["subject_pseudonym"] != pseudonym
    assert again["id"] != created["id"]

    # A withdrawal and a read add more rows and responses; none carries the raw ids.
    withdrawn = world.post(
        f"/v1/consents/{created['id']}/withdraw", "partner", "health-trust", json={}
    )
    assert withdrawn.status_code == 200, withdrawn.text
    history = world.post(
        "/v1/consents/history", "auditor", "ethics-board", json={"subject_id": RAW_SUBJECT}
    )
    assert history.status_code == 200, history.text
    assert RAW_SUBJECT not in history.text
    assert RAW_GUARDIAN not in history.text

    dump = _dump(world)
    assert pseudonym in dump  # the dump does see the consent tables
    assert guardian_pseudonym in dump
    for table in ("consents", "consent_events", "audit_events", "audit_event_subjects"):
        assert f"\n{table}: " in f"\n{dump}"
    assert RAW_SUBJECT not in dump
    assert RAW_GUARDIAN not in dump


def test_a_refused_consent_can_be_recorded(world: Api, clock: MutableClock) -> None:
    refused = world.consent(clock.now(), "subject-refuses", status="refused")
    assert refused["status"] == "refused"
    events = world.ok(world.get(f"/v1/consents/{refused['id']}/events", "partner", "health-trust"))
    assert [(e["revision"], e["event_type"]) for e in events] == [(1, "refused")]
    withdraw = world.post(
        f"/v1/consents/{refused['id']}/withdraw", "partner", "health-trust", json={}
    )
    _assert_problem(withdraw, 409)


# --- history -------------------------------------------------------------------------------


def test_history_partner_sees_own_organisation_auditor_sees_all(
    world: Api, clock: MutableClock
) -> None:
    now = clock.now()
    ours = world.consent(now, "subject-h1")
    theirs = world.consent(now, "subject-h1", org="council")
    world.consent(now, "subject-someone-else")

    mine = _history(world, "partner", "health-trust", "subject-h1")
    assert mine["subject_pseudonym"] == ours["subject_pseudonym"]
    assert [c["id"] for c in mine["consents"]] == [ours["id"]]
    assert set(mine["events"]) == {ours["id"]}

    council = _history(world, "partner", "council", "subject-h1")
    assert [c["id"] for c in council["consents"]] == [theirs["id"]]
    assert set(council["events"]) == {theirs["id"]}

    # A steward reads its own organisation's consents too, never another's.
    steward = _history(world, "steward", "council", "subject-h1")
    assert [c["id"] for c in steward["consents"]] == [theirs["id"]]

    nobody = _history(world, "partner", "outsider", "subject-h1")
    assert nobody["consents"] == []
    assert nobody["events"] == {}

    audited = _history(world, "auditor", "ethics-board", "subject-h1")
    assert {c["id"] for c in audited["consents"]} == {ours["id"], theirs["id"]}
    assert set(audited["events"]) == {ours["id"], theirs["id"]}

    unknown = _history(world, "auditor", "ethics-board", "never-recorded")
    assert unknown["consents"] == []
    assert PSEUDONYM.match(unknown["subject_pseudonym"])


def test_history_lists_events_in_revision_order(world: Api, clock: MutableClock) -> None:
    now = clock.now()
    consent = world.consent(now, "subject-h2", valid_until=(now + timedelta(days=30)).isoformat())
    path = f"/v1/consents/{consent['id']}"
    clock.advance(timedelta(minutes=5))
    renewal = {
        "valid_until": (clock.now() + timedelta(days=400)).isoformat(),
        "evidence": _evidence(clock.now()),
    }
    world.ok(world.post(f"{path}/renew", "partner", "health-trust", json=renewal))
    clock.advance(timedelta(minutes=5))
    world.ok(world.post(f"{path}/withdraw", "partner", "health-trust", json={"reason": "asked"}))

    for role, org in (("partner", "health-trust"), ("auditor", "ethics-board")):
        history = _history(world, role, org, "subject-h2")
        events = history["events"][consent["id"]]
        assert [(e["revision"], e["event_type"]) for e in events] == [
            (1, "given"),
            (2, "renewed"),
            (3, "withdrawn"),
        ]
        assert [e["state"]["status"] for e in events] == ["given", "given", "withdrawn"]
        assert events[0]["occurred_at"] < events[1]["occurred_at"] < events[2]["occurred_at"]
        assert {e["actor_org"] for e in events} == {"health-trust"}
        (current,) = history["consents"]
        assert current["status"] == "withdrawn"
        assert current["revision"] == 3

    same = world.ok(world.get(f"{path}/events", "partner", "health-trust"))
    assert [e["revision"] for e in same] == [1, 2, 3]


def test_ethics_reviewer_may_not_read_consents(world: Api, clock: MutableClock) -> None:
    consent = world.consent(clock.now(), "subject-h3")
    for response in (
        world.post(
            "/v1/consents/history",
            "ethics_reviewer",
            "health-trust",
            json={"subject_id": "subject-h3"},
        ),
        world.get(f"/v1/consents/{consent['id']}", "ethics_reviewer", "health-trust"),
        world.get(f"/v1/consents/{consent['id']}/events", "ethics_reviewer", "health-trust"),
    ):
        body = _assert_problem(response, 403)
        assert body["type"].endswith("/forbidden")


def test_another_organisation_cannot_read_a_consent_by_id(world: Api, clock: MutableClock) -> None:
    consent = world.consent(clock.now(), "subject-h4")
    for role in ("partner", "steward"):
        _assert_problem(world.get(f"/v1/consents/{consent['id']}", role, "council"), 404)
        _assert_problem(world.get(f"/v1/consents/{consent['id']}/events", role, "council"), 404)
    assert (
        world.ok(world.get(f"/v1/consents/{consent['id']}", "auditor", "council"))["id"]
        == (consent["id"])
    )


# --- withdrawal ----------------------------------------------------------------------------


def test_withdraw_appends_an_event_and_cannot_be_repeated(world: Api, clock: MutableClock) -> None:
    consent = world.consent(clock.now(), "subject-w1")
    path = f"/v1/consents/{consent['id']}"
    clock.advance(timedelta(minutes=1))

    withdrawn = world.ok(
        world.post(f"{path}/withdraw", "partner", "health-trust", json={"reason": "changed mind"})
    )
    assert withdrawn["status"] == "withdrawn"
    assert withdrawn["revision"] == 2
    assert withdrawn["subject_pseudonym"] == consent["subject_pseudonym"]

    events = world.ok(world.get(f"{path}/events", "partner", "health-trust"))
    assert [(e["revision"], e["event_type"]) for e in events] == [(1, "given"), (2, "withdrawn")]
    assert events[0]["state"]["status"] == "given"  # the first event was not rewritten
    assert events[1]["state"]["status"] == "withdrawn"
    assert world.ok(world.get(path, "partner", "health-trust"))["status"] == "withdrawn"

    before = _counts(world)
    again = _assert_problem(world.post(f"{path}/withdraw", "partner", "health-trust", json={}), 409)
    assert again["type"].endswith("/invalid-transition")
    assert _counts(world) == before


def test_withdraw_refusals(world: Api, clock: MutableClock) -> None:
    consent = world.consent(clock.now(), "subject-w2")
    path = f"/v1/consents/{consent['id']}/withdraw"
    before = _counts(world)

    _assert_problem(world.post(path, "partner", "council", json={}), 404)
    for role in ("steward", "auditor", "ethics_reviewer", "admin"):
        body = _assert_problem(world.post(path, role, "health-trust", json={}), 403)
        assert body["type"].endswith("/forbidden")
    _assert_problem(
        world.post("/v1/consents/no-such-consent/withdraw", "partner", "health-trust", json={}),
        404,
    )

    assert _counts(world) == before
    current = world.ok(world.get(f"/v1/consents/{consent['id']}", "partner", "health-trust"))
    assert current["status"] == "given"
    assert current["revision"] == 1


# --- renewal -------------------------------------------------------------------------------


def test_renew_a_given_consent_with_a_new_validity(world: Api, clock: MutableClock) -> None:
    now = clock.now()
    consent = world.consent(now, "subject-r1", valid_until=(now + timedelta(days=30)).isoformat())
    new_until = now + timedelta(days=400)
    renewed = world.ok(
        world.post(
            f"/v1/consents/{consent['id']}/renew",
            "partner",
            "health-trust",
            json={"valid_until": new_until.isoformat(), "evidence": _evidence(now)},
        )
    )
    assert renewed["status"] == "given"
    assert renewed["revision"] == 2
    assert datetime.fromisoformat(renewed["valid_until"]) == new_until
    assert renewed["evidence"]["notice_version"] == "v2"
    events = world.ok(world.get(f"/v1/consents/{consent['id']}/events", "partner", "health-trust"))
    assert [e["event_type"] for e in events] == ["given", "renewed"]
    assert datetime.fromisoformat(events[0]["state"]["valid_until"]) == now + timedelta(days=30)


def test_renew_an_expired_consent(world: Api, clock: MutableClock) -> None:
    now = clock.now()
    consent = world.consent(now, "subject-r2", valid_until=(now + timedelta(days=1)).isoformat())
    clock.advance(timedelta(days=2))
    assert run_sweep(_runtime(world))["consents_expired"] == 1
    path = f"/v1/consents/{consent['id']}"
    assert world.ok(world.get(path, "partner", "health-trust"))["status"] == "expired"

    new_until = clock.now() + timedelta(days=365)
    renewed = world.ok(
        world.post(
            f"{path}/renew",
            "partner",
            "health-trust",
            json={"valid_until": new_until.isoformat(), "evidence": _evidence(clock.now())},
        )
    )
    assert renewed["status"] == "given"
    assert renewed["revision"] == 3
    assert datetime.fromisoformat(renewed["valid_until"]) == new_until
    events = world.ok(world.get(f"{path}/events", "partner", "health-trust"))
    assert [e["event_type"] for e in events] == ["given", "expired", "renewed"]


def test_renew_refusals(world: Api, clock: MutableClock) -> None:
    now = clock.now()
    consent = world.consent(now, "subject-r3", valid_until=(now + timedelta(days=30)).isoformat())
    path = f"/v1/consents/{consent['id']}/renew"
    future = {"valid_until": (now + timedelta(days=90)).isoformat(), "evidence": _evidence(now)}
    before = _counts(world)

    past = {"valid_until": (now - timedelta(days=1)).isoformat(), "evidence": _evidence(now)}
    _assert_problem(world.post(path, "partner", "health-trust", json=past), 422)
    _assert_problem(world.post(path, "partner", "council", json=future), 404)
    _assert_problem(world.post(path, "steward", "health-trust", json=future), 403)
    _assert_problem(
        world.post(path, "partner", "health-trust", json={**future, "status": "given"}), 422
    )
    assert _counts(world) == before

    world.ok(
        world.post(f"/v1/consents/{consent['id']}/withdraw", "partner", "health-trust", json={})
    )
    before = _counts(world)
    body = _assert_problem(world.post(path, "partner", "health-trust", json=future), 409)
    assert body["type"].endswith("/invalid-transition")
    assert _counts(world) == before
    current = world.ok(world.get(f"/v1/consents/{consent['id']}", "partner", "health-trust"))
    assert current["status"] == "withdrawn"
    assert datetime.fromisoformat(current["valid_until"]) == now + timedelta(days=30)


# --- append-only history -------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE consent_events SET event_type = 'given', revision = revision + 10",
        "DELETE FROM consent_events",
    ],
)
def test_consent_history_cannot_be_rewritten_in_the_database(
    world: Api, clock: MutableClock, statement: str
) -> None:
    consent = world.consent(clock.now(), "subject-a1")
    world.ok(
        world.post(f"/v1/consents/{consent['id']}/withdraw", "partner", "health-trust", json={})
    )
    runtime = _runtime(world)

    with pytest.raises(DBAPIError), runtime.db.begin() as connection:
        connection.execute(text(statement))

    events = world.ok(world.get(f"/v1/consents/{consent['id']}/events", "partner", "health-trust"))
    assert [(e["revision"], e["event_type"]) for e in events] == [(1, "given"), (2, "withdrawn")]


def test_consent_history_cannot_be_emptied_wholesale(
    world: Api, clock: MutableClock, backend: str
) -> None:
    world.consent(clock.now(), "subject-a2")
    statement = (
        "TRUNCATE consent_events CASCADE"
        if backend == "postgresql"
        else "DELETE FROM consent_events WHERE revision >= 1"
    )
    with pytest.raises(DBAPIError), _runtime(world).db.begin() as connection:
        connection.execute(text(statement))
    assert _counts(world)["consent_events"] == 1


# --- validation ----------------------------------------------------------------------------


def _body(now: datetime, **overrides: Any) -> dict[str, Any]:
    return {
        "subject_id": RAW_SUBJECT,
        "purposes": ["research"],
        "categories": ["health"],
        "evidence": _evidence(now),
        **overrides,
    }


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"purposes": ["research", "research.astrology"]}, "research.astrology"),
        ({"categories": ["health", "health.dreams"]}, "health.dreams"),
        ({"purposes": ["mind_reading"], "categories": ["soul"]}, "mind_reading"),
    ],
)
def test_unknown_purpose_or_category_is_named_in_a_422(
    world: Api, clock: MutableClock, overrides: dict[str, Any], named: str
) -> None:
    before = _counts(world)
    response = world.post(
        "/v1/consents", "partner", "health-trust", json=_body(clock.now(), **overrides)
    )
    body = _assert_problem(response, 422)
    assert named in body["detail"]
    assert RAW_SUBJECT not in response.text
    assert _counts(world) == before


@pytest.mark.parametrize(
    ("overrides", "location"),
    [
        ({"status": "withdrawn"}, "body"),
        ({"status": "expired"}, "body"),
        ({"id": "00000000-0000-0000-0000-000000000001"}, "body.id"),
        ({"controller_org": "council"}, "body.controller_org"),
        ({"revision": 7}, "body.revision"),
        ({"subject_pseudonym": "ps_" + "0" * 64}, "body.subject_pseudonym"),
        ({"subject_is_minor": True}, "body"),
        (
            {"valid_from": "2030-01-02T00:00:00+00:00", "valid_until": "2030-01-01T00:00:00+00:00"},
            "body",
        ),
        (
            {"valid_from": "2030-01-01T00:00:00+00:00", "valid_until": "2030-01-01T00:00:00+00:00"},
            "body",
        ),
        ({"valid_until": "2030-01-01T00:00:00"}, "body.valid_until"),
        ({"subject_id": ""}, "body.subject_id"),
        ({"purposes": []}, "body.purposes"),
        ({"purposes": ["Research!"]}, "body.purposes.0"),
        ({"evidence": {"method": "telepathy", "notice_version": "v1"}}, "body.evidence.method"),
        (
            {"guardian": {"guardian_id": RAW_GUARDIAN, "relationship": "parent", "x": 1}},
            "body.guardian.x",
        ),
    ],
)
def test_invalid_consent_bodies_are_422_and_write_nothing(
    world: Api, clock: MutableClock, overrides: dict[str, Any], location: str
) -> None:
    before = _counts(world)
    response = world.post(
        "/v1/consents", "partner", "health-trust", json=_body(clock.now(), **overrides)
    )
    body = _assert_problem(response, 422)
    assert location in {e["location"] for e in body["errors"]}, body
    assert RAW_SUBJECT not in response.text
    assert RAW_GUARDIAN not in response.text
    assert _counts(world) == before


def test_valid_until_before_the_defaulted_valid_from_is_422(
    world: Api, clock: MutableClock
) -> None:
    """valid_from defaults to now, so a valid_until in the past ends before it starts."""
    before = _counts(world)
    past = (clock.now() - timedelta(days=3)).isoformat()
    response = world.post(
        "/v1/consents", "partner", "health-trust", json=_body(clock.now(), valid_until=past)
    )
    assert response.status_code == 422, response.text
    assert _counts(world) == before


def test_minor_without_guardian_is_refused_with_a_reason(world: Api, clock: MutableClock) -> None:
    before = _counts(world)
    response = world.post(
        "/v1/consents",
        "partner",
        "health-trust",
        json=_body(clock.now(), subject_is_minor=True, categories=["minors"]),
    )
    body = _assert_problem(response, 422)
    assert "guardian" in body["detail"]
    assert _counts(world) == before
    with_guardian = world.consent(
        clock.now(),
        "subject-minor",
        subject_is_minor=True,
        guardian={"guardian_id": RAW_GUARDIAN, "relationship": "parent"},
    )
    assert with_guardian["subject_is_minor"] is True


def test_other_roles_may_not_record_consents(world: Api, clock: MutableClock) -> None:
    before = _counts(world)
    for role in ("steward", "auditor", "ethics_reviewer", "admin"):
        response = world.post("/v1/consents", role, "health-trust", json=_body(clock.now()))
        _assert_problem(response, 403)
    assert _counts(world) == before


def test_unknown_history_body_field_is_422(world: Api) -> None:
    response = world.post(
        "/v1/consents/history",
        "partner",
        "health-trust",
        json={"subject_id": RAW_SUBJECT, "organisation": "council"},
    )
    body = _assert_problem(response, 422)
    assert "body.organisation" in {e["location"] for e in body["errors"]}
    assert RAW_SUBJECT not in response.text


# --- expiry --------------------------------------------------------------------------------


def test_sweep_expires_consents_past_their_validity(world: Api, clock: MutableClock) -> None:
    now = clock.now()
    due = world.consent(now, "subject-e1", valid_until=(now + timedelta(days=1)).isoformat())
    later = world.consent(now, "subject-e2", valid_until=(now + timedelta(days=10)).isoformat())
    open_ended = world.consent(now, "subject-e3")
    runtime = _runtime(world)

    assert run_sweep(runtime)["consents_expired"] == 0
    assert world.ok(world.get(f"/v1/consents/{due['id']}", "partner", "health-trust"))[
        "status"
    ] == ("given")

    clock.advance(timedelta(days=1, seconds=1))
    assert run_sweep(runtime)["consents_expired"] == 1
    expired = world.ok(world.get(f"/v1/consents/{due['id']}", "partner", "health-trust"))
    assert expired["status"] == "expired"
    assert expired["revision"] == 2
    events = world.ok(world.get(f"/v1/consents/{due['id']}/events", "partner", "health-trust"))
    assert [(e["revision"], e["event_type"]) for e in events] == [(1, "given"), (2, "expired")]
    assert events[1]["state"]["status"] == "expired"
    assert datetime.fromisoformat(events[1]["occurred_at"]) == clock.now()

    for other in (later, open_ended):
        current = world.ok(world.get(f"/v1/consents/{other['id']}", "partner", "health-trust"))
        assert current["status"] == "given"
        assert current["revision"] == 1

    # A second sweep changes nothing; an expired consent cannot be withdrawn.
    assert run_sweep(runtime)["consents_expired"] == 0
    withdraw = world.post(f"/v1/consents/{due['id']}/withdraw", "partner", "health-trust", json={})
    _assert_problem(withdraw, 409)
