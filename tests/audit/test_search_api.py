"""The auditor's search, counts and export: every filter, pagination, and who sees what."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import rfc8785

from service.audit import search
from service.core.identity import Principal, Role
from service.core.pseudonym import Pseudonymiser
from tests.support.api import Api
from tests.support.clock import MutableClock

pytestmark = pytest.mark.storage


@dataclass
class Log:
    """Two agreements, consents and decisions, across two days."""

    shared: str  # health-trust -> uni-lab
    other: str  # council -> uni-lab; health-trust is no party
    deny_reasons: list[str]
    day_two: str  # RFC 3339 start of the second day
    pseudonym: str


@pytest.fixture
def log(world: Api, clock: MutableClock) -> Log:
    shared = world.active(clock.now())
    other = world.active(clock.now(), providers=["council"])
    world.consent(clock.now(), "subject-1")
    world.decide(shared, "subject-1")
    clock.advance(timedelta(days=1))
    day_two = clock.now().isoformat()
    denied = world.decide(shared, "subject-2")
    assert denied["allow"] is False
    world.decide(other, "subject-1")
    reasons = sorted({r["code"] for r in denied["reasons"]} | {
        r["code"] for s in denied["subjects"] for r in s["reasons"]
    })  # fmt: skip
    pseudonym = Pseudonymiser(world.settings.pseudonym_key.get_secret_value().encode())
    return Log(shared, other, reasons, day_two, pseudonym("subject-1"))


def items(api: Api, role: str, org: str, query: str = "") -> list[dict[str, Any]]:
    """Every matching event, following cursors in pages of 2."""
    out: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = api.ok(api.get(f"/v1/audit/events?limit=2{cursor}&{query}", role, org))
        out += page["items"]
        if page["next_cursor"] is None:
            return out
        cursor = f"&cursor={page['next_cursor']}"


def test_auditor_pages_through_everything_in_seq_order(world: Api, log: Log) -> None:
    everything = items(world, "auditor", "council")
    seqs = [e["seq"] for e in everything]
    assert seqs == list(range(len(seqs)))
    page = world.ok(world.get("/v1/audit/events?limit=500", "auditor", "council"))
    assert [e["seq"] for e in page["items"]] == seqs
    backwards = world.ok(world.get("/v1/audit/events?order=desc&limit=3", "auditor", "council"))
    assert [e["seq"] for e in backwards["items"]] == seqs[::-1][:3]
    after = f"/v1/audit/events?order=desc&limit=3&cursor={backwards['next_cursor']}"
    assert [e["seq"] for e in world.ok(world.get(after, "admin", "accord"))["items"]] == seqs[::-1][
        3:6
    ]
    for event in everything:  # what the API shows is what the leaf hashes
        document = {k: v for k, v in event.items() if k != "leaf_hash"}
        assert hashlib.sha256(b"\x00" + rfc8785.dumps(document)).hexdigest() == event["leaf_hash"]


@pytest.mark.parametrize(
    ("query", "check"),
    [
        ("organisation=health-trust", lambda e, log: e["actor"]["organisation"] == "health-trust"),
        ("action=decision.made", lambda e, log: e["action"] == "decision.made"),
        ("outcome=deny", lambda e, log: e["outcome"] == "deny"),
        ("actor=partner@uni-lab", lambda e, log: e["actor"]["subject"] == "partner@uni-lab"),
        ("purpose=research", lambda e, log: (e["purpose"] or "").startswith("research.")),
        ("purpose=research.public_health", lambda e, log: e["purpose"] == "research.public_health"),
        ("subject_id=subject-1", lambda e, log: log.pseudonym in e["subjects"]),
    ],
)
def test_each_filter_keeps_exactly_the_matching_events(
    world: Api, log: Log, query: str, check: Any
) -> None:
    found = items(world, "auditor", "council", query)
    assert found
    assert found == [e for e in items(world, "auditor", "council") if check(e, log)]


def test_agreement_reason_and_time_filters(world: Api, log: Log) -> None:
    everything = items(world, "auditor", "council")
    by_agreement = items(world, "auditor", "council", f"agreement_id={log.shared}")
    assert by_agreement == [
        e for e in everything if e["agreement"] and e["agreement"]["id"] == log.shared
    ]
    reason = log.deny_reasons[0]
    by_reason = items(world, "auditor", "council", f"reason={reason}")
    assert by_reason == [e for e in everything if reason in e["reasons"]]
    assert by_reason
    since = items(world, "auditor", "council", f"from={log.day_two.replace('+', '%2B')}")
    before = items(world, "auditor", "council", f"to={log.day_two.replace('+', '%2B')}")
    assert [e["action"] for e in since] == ["decision.made", "decision.made"]
    assert before + since == everything
    nothing = items(world, "auditor", "council", "purpose=service_delivery")
    assert nothing == []


def test_bad_search_input_is_refused(world: Api, log: Log) -> None:
    for query in ("cursor=abc", "limit=501", "limit=0", "from=2026-01-01T00:00:00", "order=up"):
        response = world.get(f"/v1/audit/events?{query}", "auditor", "council")
        assert response.status_code == 422, query
    assert world.get("/v1/audit/events?action=nope", "auditor", "council").status_code == 422


def test_partners_see_only_their_own_organisations_events(world: Api, log: Log) -> None:
    mine = items(world, "partner", "uni-lab")
    assert mine
    assert {e["actor"]["organisation"] for e in mine} == {"uni-lab"}
    theirs = items(world, "partner", "health-trust")
    assert {e["actor"]["organisation"] for e in theirs} == {"health-trust"}
    assert "consent.given" in {e["action"] for e in theirs}
    assert "decision.made" not in {e["action"] for e in theirs}
    assert items(world, "partner", "outsider") == []


def test_stewards_see_their_agreements_and_their_own_actions(world: Api, log: Log) -> None:
    seen = items(world, "steward", "health-trust")
    agreements = {e["agreement"]["id"] for e in seen if e["agreement"]}
    assert log.shared in agreements
    assert log.other not in agreements
    uni_lab_decisions = [e for e in seen if e["action"] == "decision.made"]
    assert {e["agreement"]["id"] for e in uni_lab_decisions} == {log.shared}
    council = items(world, "steward", "council")
    assert log.other in {e["agreement"]["id"] for e in council if e["agreement"]}
    assert log.shared not in {e["agreement"]["id"] for e in council if e["agreement"]}


def test_other_roles_may_not_search(world: Api, log: Log) -> None:
    for path in ("/v1/audit/events", "/v1/audit/counts?group_by=outcome", "/v1/audit/export"):
        assert world.get(path, "ethics_reviewer", "ethics-board").status_code == 403
        assert world.client.get(path).status_code == 401


def test_reading_one_event_respects_the_scope(world: Api, log: Log) -> None:
    event = items(world, "partner", "uni-lab")[0]
    path = f"/v1/audit/events/{event['seq']}"
    assert world.ok(world.get(path, "partner", "uni-lab")) == event
    assert world.get(path, "partner", "council").status_code == 404
    assert world.get("/v1/audit/events/999999", "auditor", "council").status_code == 404


def test_counts_group_and_scope(world: Api, log: Log) -> None:
    def counts(query: str, role: str = "auditor", org: str = "council") -> dict[Any, int]:
        body = world.ok(world.get(f"/v1/audit/counts?{query}", role, org))
        assert body["total"] == sum(g["count"] for g in body["groups"])
        return {g["key"]: g["count"] for g in body["groups"]}

    everything = items(world, "auditor", "council")
    outcomes = counts("group_by=outcome")
    assert outcomes == {o: sum(e["outcome"] == o for e in everything) for o in outcomes}
    assert sum(outcomes.values()) == len(everything)
    reasons = counts("group_by=reason&action=decision.made")
    assert set(log.deny_reasons) <= reasons.keys()
    assert reasons == {r: sum(r in e["reasons"] for e in everything) for r in reasons}
    agreements = counts("group_by=agreement&action=decision.made")
    assert agreements == {log.shared: 2, log.other: 1}
    since = counts(f"group_by=purpose&from={log.day_two.replace('+', '%2B')}")
    assert since == {"research.public_health": 2}
    partner = counts("group_by=outcome", "partner", "health-trust")
    assert sum(partner.values()) == len(items(world, "partner", "health-trust"))
    assert world.get("/v1/audit/counts?group_by=colour", "auditor", "council").status_code == 422


def test_export_jsonl_matches_the_search(world: Api, log: Log) -> None:
    response = world.get("/v1/audit/export?format=jsonl&outcome=allow", "auditor", "council")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in response.headers["content-disposition"]
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines == items(world, "auditor", "council", "outcome=allow")


def test_export_csv_is_scoped_and_spreadsheet_safe(
    world: Api, log: Log, clock: MutableClock
) -> None:
    token = world.token("partner", "health-trust", subject="=HYPERLINK(1)")
    body = {
        "subject_id": "subject-9",
        "purposes": ["research"],
        "categories": ["health"],
        "evidence": {
            "method": "web_form",
            "notice_version": "v1",
            "collected_at": clock.now().isoformat(),
        },
    }
    created = world.client.post(
        "/v1/consents", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201, created.text
    response = world.get("/v1/audit/export?format=csv", "partner", "health-trust")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["actor_org"] for r in rows} == {"health-trust"}
    assert rows[-1]["actor_subject"] == "'=HYPERLINK(1)"
    assert json.loads(rows[-1]["subjects"]) == [Pseudonymiser(
        world.settings.pseudonym_key.get_secret_value().encode())("subject-9")]  # fmt: skip


def test_export_reads_in_pages_and_stops_at_its_snapshot(world: Api, log: Log) -> None:
    runtime = world.client.app.state.runtime  # type: ignore[attr-defined]
    auditor = Principal("a", Role.AUDITOR, "council")
    everything = items(world, "auditor", "council")
    pages = search.export_pages(runtime.read_sessions, auditor, search.EventFilter(), 5, page=2)
    assert [[e.seq for e in page] for page in pages] == [[0, 1], [2, 3], [4]]
    full = search.export_pages(runtime.read_sessions, auditor, search.EventFilter(), 10**9, 3)
    assert sum(len(page) for page in full) == len(everything)
