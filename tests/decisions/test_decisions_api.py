"""Access decisions through the HTTP API: each rule, allow and every deny reason."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Event
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from service.core.identity import Actor, Principal, Role
from service.decisions import service
from service.decisions.models import Decision
from service.decisions.schemas import DecisionRequest
from service.decisions.writer import DecisionWriter, _Pending
from tests.support.api import Api
from tests.support.clock import MutableClock
from tests.support.decisions import codes, decide


@pytest.fixture
def agreement(world: Api, clock: MutableClock) -> str:
    """Active, consent-based, strict: research (and descendants) may receive postcode and DOB."""
    agreement_id = world.active(
        clock.now(),
        purposes=[{"purpose": "research", "fields": ["postcode", "date_of_birth"]}],
    )
    world.consent(clock.now(), "subject-1")
    return agreement_id


def test_consented_subject_is_allowed_with_obligations(world: Api, agreement: str) -> None:
    decision = decide(world, agreement, fields=["postcode", "date_of_birth"])
    assert decision["allow"] is True
    assert decision["reasons"] == []
    assert decision["obligations"]["permitted_fields"] == ["date_of_birth", "postcode"]
    assert decision["obligations"]["dropped_fields"] == []
    assert decision["obligations"]["pseudonymise"] is True
    assert decision["obligations"]["retention_days"] == 365
    assert decision["agreement_version"] == 1
    assert decision["policy_revision"].startswith("sha256:")
    assert decision["subjects"][0]["allow"] is True
    assert decision["subjects"][0]["subject"].startswith("ps_")


def test_unknown_agreement_is_denied(world: Api) -> None:
    decision = decide(world, "00000000-0000-0000-0000-000000000000")
    assert (decision["allow"], codes(decision)) == (False, ["agreement_not_found"])


def test_caller_must_be_a_recipient_and_learns_nothing_more(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    """Not the agreement's terms (its other reasons, its obligations) nor its subjects'
    consents: here the agreement has expired, strict minimisation drops a field, subject-1
    consented and subject-2 did not."""
    clock.advance(timedelta(days=400))
    for org in ("health-trust", "outsider"):
        decision = decide(
            world, agreement, org=org, fields=["postcode", "nhs_number"],
            subjects=["subject-1", "subject-2"],
        )  # fmt: skip
        assert (decision["allow"], codes(decision)) == (False, ["caller_not_recipient"])
        assert decision["obligations"] == {
            "permitted_fields": [],
            "dropped_fields": [],
            "pseudonymise": False,
            "retention_days": None,
            "min_cohort": None,
            "ethics_conditions": [],
        }
        assert [codes(s) for s in decision["subjects"]] == [["request_denied"]] * 2
        assert decision["agreement_version"] is None  # not even how often it was amended
        path = f"/v1/decisions/{decision['decision_id']}"
        assert world.ok(world.get(path, "partner", org))["agreement_version"] is None
        own = world.ok(world.get("/v1/audit/events", "partner", org))["items"]
        event = next(e for e in own if e["resource"]["id"] == decision["decision_id"])
        assert event["agreement"] == {"id": agreement, "version": None}
        assert event["ethics_review"] is None
    recipient = decide(
        world, agreement, fields=["postcode", "nhs_number"], subjects=["subject-1", "subject-2"]
    )
    assert codes(recipient) == ["agreement_expired", "fields_not_permitted"]
    assert [codes(s) for s in recipient["subjects"]] == [
        ["request_denied"],
        ["consent_missing", "request_denied"],
    ]


def test_suspended_and_draft_agreements_deny(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    world.ok(
        world.post(
            f"/v1/agreements/{agreement}/suspend",
            "steward",
            "health-trust",
            json={"reason": "incident"},
        )
    )
    assert "agreement_suspended" in codes(decide(world, agreement))
    draft = world.draft(clock.now())
    assert "agreement_not_active" in codes(decide(world, draft))


def test_validity_window_is_enforced(world: Api, agreement: str, clock: MutableClock) -> None:
    clock.advance(timedelta(days=400))
    assert "agreement_expired" in codes(decide(world, agreement))


def test_descendant_purpose_is_permitted_but_others_are_not(world: Api, agreement: str) -> None:
    assert decide(world, agreement, purpose="research.public_health")["allow"] is True
    other = decide(world, agreement, purpose="service_delivery.care_coordination")
    assert codes(other) == ["purpose_not_permitted"]
    unknown = decide(world, agreement, purpose="astrology.horoscopes")
    assert codes(unknown) == ["purpose_unknown"]


def test_strict_minimisation_denies_unpermitted_fields(world: Api, agreement: str) -> None:
    decision = decide(world, agreement, fields=["postcode", "email"])
    assert decision["allow"] is False
    assert codes(decision) == ["fields_not_permitted"]
    assert decision["obligations"]["dropped_fields"] == ["email"]


def test_trim_minimisation_drops_and_reports(world: Api, clock: MutableClock) -> None:
    agreement_id = world.active(
        clock.now(),
        legal_basis="public_task",
        minimisation={"mode": "trim", "min_cohort": 5},
        purposes=[{"purpose": "research", "fields": ["postcode"]}],
    )
    trimmed = decide(world, agreement_id, fields=["postcode", "email"])
    assert trimmed["allow"] is True
    assert trimmed["obligations"]["permitted_fields"] == ["postcode"]
    assert trimmed["obligations"]["dropped_fields"] == ["email"]
    nothing = decide(world, agreement_id, fields=["email"])
    assert codes(nothing) == ["no_permitted_fields"]


def test_aggregate_releases_respect_the_minimum_cohort(world: Api, agreement: str) -> None:
    small = decide(world, agreement, aggregate={"cohort_size": 9})
    assert (small["allow"], codes(small)) == (False, ["cohort_below_minimum"])
    large = decide(world, agreement, aggregate={"cohort_size": 10})
    assert large["allow"] is True
    assert large["subjects"] == []
    assert large["obligations"]["min_cohort"] == 10


def test_consent_is_required_per_subject(world: Api, agreement: str) -> None:
    decision = decide(world, agreement, subjects=["subject-1", "nobody"])
    assert decision["allow"] is False
    assert codes(decision) == ["some_subjects_denied"]
    first, second = decision["subjects"]
    assert (first["index"], first["allow"]) == (0, True)
    assert (second["index"], second["allow"]) == (1, False)
    assert [r["code"] for r in second["reasons"]] == ["consent_missing"]


def test_withdrawal_takes_effect_on_the_next_decision(world: Api, agreement: str) -> None:
    history = world.ok(
        world.post(
            "/v1/consents/history", "partner", "health-trust", json={"subject_id": "subject-1"}
        )
    )
    consent_id = history["consents"][0]["id"]
    assert decide(world, agreement)["allow"] is True
    world.ok(
        world.post(
            f"/v1/consents/{consent_id}/withdraw",
            "partner",
            "health-trust",
            json={"reason": "asked"},
        )
    )
    after = decide(world, agreement)
    assert after["allow"] is False
    assert [r["code"] for r in after["subjects"][0]["reasons"]] == ["consent_withdrawn"]


def test_consent_must_cover_purpose_categories_and_time(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    now = clock.now()
    world.consent(now, "wrong-purpose", purposes=["safeguarding"])
    world.consent(now, "wrong-category", categories=["contact"])
    world.consent(now, "expiring", valid_until=(now + timedelta(hours=1)).isoformat())
    decision = decide(
        world,
        agreement,
        fields=["postcode", "date_of_birth"],
        subjects=["wrong-purpose", "wrong-category", "expiring"],
    )
    reasons = [[r["code"] for r in s["reasons"]] for s in decision["subjects"]]
    assert reasons[0] == ["consent_purpose_not_covered"]
    assert reasons[1] == ["consent_categories_not_covered"]
    assert decision["subjects"][2]["allow"] is True
    clock.advance(timedelta(hours=2))
    later = decide(world, agreement, subjects=["expiring"])
    assert [r["code"] for r in later["subjects"][0]["reasons"]] == ["consent_expired"]


def test_only_the_providers_consents_count(world: Api, agreement: str, clock: MutableClock) -> None:
    """Not an outsider's, and not the recipient's own: a recipient cannot grant itself
    access, nor override a withdrawal at the provider."""
    now = clock.now()
    world.consent(now, "elsewhere", org="outsider")
    world.consent(now, "self-granted", org="uni-lab")
    withdrawn = world.consent(now, "withdrew")
    world.withdraw(withdrawn["id"])
    world.consent(now, "withdrew", org="uni-lab")
    decision = decide(world, agreement, subjects=["elsewhere", "self-granted", "withdrew"])
    assert [codes(s) for s in decision["subjects"]] == [
        ["consent_missing"],
        ["consent_missing"],
        ["consent_withdrawn"],
    ]
    world.consent(now, "self-granted")  # the provider's
    assert decide(world, agreement, subjects=["self-granted"])["allow"] is True


def test_minors_need_a_guardian(world: Api, agreement: str, clock: MutableClock) -> None:
    missing = world.post(
        "/v1/consents",
        "partner",
        "health-trust",
        json={
            "subject_id": "child-1",
            "purposes": ["research"],
            "categories": ["contact"],
            "subject_is_minor": True,
            "evidence": {
                "method": "paper_form",
                "notice_version": "v1",
                "collected_at": clock.now().isoformat(),
            },
        },
    )
    assert missing.status_code == 422
    world.consent(
        clock.now(),
        "child-2",
        subject_is_minor=True,
        guardian={"guardian_id": "parent-2", "relationship": "mother"},
    )
    assert decide(world, agreement, subjects=["child-2"])["allow"] is True


def test_sensitive_fields_need_a_valid_approving_review(world: Api, clock: MutableClock) -> None:
    now = clock.now()
    agreement_id = world.active(
        now,
        reviewed=True,
        purposes=[{"purpose": "research", "fields": ["diagnosis_code", "postcode"]}],
    )
    world.consent(now, "patient")
    allowed = decide(world, agreement_id, fields=["diagnosis_code"], subjects=["patient"])
    assert allowed["allow"] is True
    assert allowed["obligations"]["ethics_conditions"] == ["aggregate outputs only"]
    clock.advance(timedelta(days=366))
    world_review_expired = decide(
        world, agreement_id, fields=["diagnosis_code"], subjects=["patient"]
    )
    assert "ethics_review_not_valid" in codes(world_review_expired)
    clock.advance(timedelta(days=-366))
    world.review(agreement_id, clock.now(), outcome="rejected", conditions=[])
    rejected = decide(world, agreement_id, fields=["diagnosis_code"], subjects=["patient"])
    assert "ethics_review_rejected" in codes(rejected)
    # Non-sensitive fields of the same agreement do not need the review.
    assert decide(world, agreement_id, fields=["postcode"], subjects=["patient"])["allow"]


def test_only_partners_ask_for_decisions(world: Api, agreement: str) -> None:
    body = {
        "agreement_id": agreement,
        "purpose": "research",
        "fields": ["postcode"],
        "subjects": ["subject-1"],
    }
    for role in ("steward", "auditor", "ethics_reviewer", "admin"):
        assert world.post("/v1/decisions", role, "uni-lab", json=body).status_code == 403


def test_bad_requests_are_422_and_write_nothing(world: Api, agreement: str) -> None:
    for body in [
        {"agreement_id": agreement, "purpose": "research", "fields": ["postcode"]},
        {
            "agreement_id": agreement,
            "purpose": "research",
            "fields": ["postcode"],
            "subjects": ["a"],
            "aggregate": {"cohort_size": 50},
        },
        {"agreement_id": agreement, "purpose": "research", "fields": [], "subjects": ["a"]},
        {"agreement_id": agreement, "purpose": "Research!", "fields": ["x"], "subjects": ["a"]},
        {
            "agreement_id": agreement,
            "purpose": "research",
            "fields": ["postcode", "postcode"],
            "subjects": ["a"],
        },
        {
            "agreement_id": agreement,
            "purpose": "research",
            "fields": ["postcode"],
            "subjects": ["a"],
            "allow": True,
        },
    ]:
        response = world.post("/v1/decisions", "partner", "uni-lab", json=body)
        assert response.status_code == 422, body
        assert response.headers["content-type"] == "application/problem+json"
    runtime = world.client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.read_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 0


def test_batch_decides_every_subject_in_one_request(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    now = clock.now()
    for n in range(2, 6):
        world.consent(now, f"subject-{n}")
    subjects = [f"subject-{n}" for n in range(1, 8)]
    decision = decide(world, agreement, subjects=subjects)
    assert [s["allow"] for s in decision["subjects"]] == [True] * 5 + [False] * 2
    assert [s["index"] for s in decision["subjects"]] == list(range(7))


def test_batch_limit_is_enforced(world: Api, agreement: str) -> None:
    limit = world.settings.max_batch_subjects
    body = {
        "agreement_id": agreement,
        "purpose": "research",
        "fields": ["postcode"],
        "subjects": [f"s{n}" for n in range(limit + 1)],
    }
    response = world.post("/v1/decisions", "partner", "uni-lab", json=body)
    assert response.status_code == 422


def test_idempotency_key_returns_the_same_decision(world: Api, agreement: str) -> None:
    body = {
        "agreement_id": agreement,
        "purpose": "research",
        "fields": ["postcode"],
        "subjects": ["subject-1"],
    }
    headers = {"Idempotency-Key": "retry-123"}
    first = world.ok(world.post("/v1/decisions", "partner", "uni-lab", json=body, headers=headers))
    again = world.ok(world.post("/v1/decisions", "partner", "uni-lab", json=body, headers=headers))
    assert again == first
    changed = world.post(
        "/v1/decisions",
        "partner",
        "uni-lab",
        json={**body, "fields": ["date_of_birth"]},
        headers=headers,
    )
    assert changed.status_code == 409


def test_decisions_are_readable_by_parties_and_auditors_only(world: Api, agreement: str) -> None:
    decision = decide(world, agreement)
    path = f"/v1/decisions/{decision['decision_id']}"
    assert world.ok(world.get(path, "partner", "uni-lab")) == decision
    assert world.ok(world.get(path, "steward", "health-trust"))["allow"] is True
    assert world.ok(world.get(path, "auditor", "council"))["decision_id"] == decision["decision_id"]
    # The provider's system checks the decision before it releases the data.
    assert world.ok(world.get(path, "partner", "health-trust")) == decision
    assert world.get(path, "partner", "outsider").status_code == 404
    assert world.get(path, "steward", "outsider").status_code == 404
    assert world.get(path, "ethics_reviewer", "health-trust").status_code == 404
    stored = world.ok(world.get(f"{path}/input", "auditor", "council"))["input"]
    assert stored["request"]["subjects"] == [decision["subjects"][0]["subject"]]
    assert "subject-1" not in str(stored)
    assert world.get(f"{path}/input", "partner", "uni-lab").status_code == 403


def test_concurrent_mixed_requests_each_get_their_own_answer(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    for n in range(2, 9):
        world.consent(clock.now(), f"subject-{n}")
    cases = []
    for n in range(1, 41):
        subject = f"subject-{n % 12 + 1}"
        fields = ["postcode"] if n % 3 else ["postcode", "email"]
        expected = (n % 12 + 1) <= 8 and "email" not in fields
        cases.append((subject, fields, expected))

    def run(case: tuple[str, list[str], bool]) -> tuple[bool, bool, str, str]:
        subject, fields, expected = case
        got = decide(world, agreement, subjects=[subject], fields=fields)
        return got["allow"], expected, got["subjects"][0]["subject"], subject

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(run, cases))
    assert all(allow == expected for allow, expected, _, _ in results)
    by_subject: dict[str, set[str]] = {}
    for _, _, pseudonym, subject in results:
        by_subject.setdefault(subject, set()).add(pseudonym)
    assert all(len(p) == 1 for p in by_subject.values())
    assert len({next(iter(p)) for p in by_subject.values()}) == len(by_subject)


def test_one_idempotency_key_sent_at_once_gets_one_decision(
    world: Api, agreement: str, clock: MutableClock
) -> None:
    """Retries racing each other: every one gets the decision recorded first, and the other
    decisions committed alongside them are not failed by the duplicate key."""
    for n in range(2, 5):
        world.consent(clock.now(), f"subject-{n}")
    body = {
        "agreement_id": agreement,
        "purpose": "research",
        "fields": ["postcode"],
        "subjects": ["subject-1"],
    }

    def run(n: int) -> tuple[int, Any]:
        if n % 2:
            other = {**body, "subjects": [f"subject-{n % 4 + 1}"]}
            response = world.post("/v1/decisions", "partner", "uni-lab", json=other)
        else:
            headers = {"Idempotency-Key": "raced"}
            response = world.post("/v1/decisions", "partner", "uni-lab", json=body, headers=headers)
        return n, response

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(run, range(32)))
    assert [r.status_code for _, r in results] == [200] * 32
    raced = {r.json()["decision_id"] for n, r in results if n % 2 == 0}
    assert len(raced) == 1
    assert all(r.json()["allow"] for _, r in results)


def unrecorded(
    runtime: Any, actor: Actor, request: DecisionRequest, key: str | None
) -> service.Unrecorded:
    """A new decision, made but not yet recorded."""
    (decided,) = service.decide_group(runtime, [service.Ask(actor, request, key)])
    assert isinstance(decided, service.Decided)
    assert decided.unrecorded is not None
    return decided.unrecorded


def test_writer_fails_only_the_decision_with_a_duplicate_key(app: FastAPI, agreement: str) -> None:
    """A group commit that breaks a constraint is retried one decision at a time."""
    runtime = app.state.runtime
    actor = Actor(Principal("partner-1", Role.PARTNER, "uni-lab"), None)
    request = DecisionRequest(
        agreement_id=agreement, purpose="research", fields=["postcode"], subjects=["x"]
    )
    made = [unrecorded(runtime, actor, request, key) for key in ("k", "k", None, "k2")]
    outcomes: dict[int, tuple[int | None, BaseException | None]] = {}

    def done(n: int) -> Callable[[int | None, BaseException | None], None]:
        return lambda seq, error: outcomes.__setitem__(n, (seq, error))

    group = [_Pending(actor, m.event, m.row, m.at, done(n)) for n, m in enumerate(made)]
    runtime.decision_writer._commit(group)
    assert isinstance(outcomes[1][1], IntegrityError)
    assert all(outcomes[n][1] is None for n in (0, 2, 3))
    seqs = [seq for n in (0, 2, 3) if (seq := outcomes[n][0]) is not None]
    assert len(seqs) == 3
    assert seqs == sorted(set(seqs))


def test_writer_outlives_a_failing_callback(app: FastAPI, agreement: str) -> None:
    runtime = app.state.runtime
    actor = Actor(Principal("partner-1", Role.PARTNER, "uni-lab"), None)
    request = DecisionRequest(
        agreement_id=agreement, purpose="research", fields=["postcode"], subjects=["x"]
    )
    first, second = (unrecorded(runtime, actor, request, None) for _ in "ab")

    def broken(seq: int | None, error: BaseException | None) -> None:
        raise RuntimeError("a callback bug")

    recorded = Event()
    seqs: list[int | None] = []

    def done(seq: int | None, error: BaseException | None) -> None:
        seqs.append(seq)
        recorded.set()

    writer = runtime.decision_writer
    writer.submit_many([(actor, first.event, first.row, first.at, broken)])
    writer.submit_many([(actor, second.event, second.row, second.at, done)])
    assert recorded.wait(10)
    assert seqs[0] is not None


def test_several_writer_threads_keep_the_log_gapless(app: FastAPI, agreement: str) -> None:
    """Writers whose transactions overlap still take leaf indexes one after another, each
    decision recorded once; closing stops every thread."""
    runtime = app.state.runtime
    actor = Actor(Principal("partner-1", Role.PARTNER, "uni-lab"), None)
    request = DecisionRequest(
        agreement_id=agreement, purpose="research", fields=["postcode"], subjects=["x"]
    )
    made = [unrecorded(runtime, actor, request, None) for _ in range(24)]
    writer = DecisionWriter(runtime.sessions, max_group=3, threads=3)
    outcomes: dict[int, tuple[int | None, BaseException | None]] = {}
    all_done = Event()

    def done(n: int) -> Callable[[int | None, BaseException | None], None]:
        def record(seq: int | None, error: BaseException | None) -> None:
            outcomes[n] = (seq, error)
            if len(outcomes) == len(made):
                all_done.set()

        return record

    def submit(n: int) -> None:
        m = made[n]
        writer.submit_many([(actor, m.event, m.row, m.at, done(n))])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(submit, range(len(made))))
    assert all_done.wait(20)
    threads = writer.workers.threads
    writer.close()
    assert len(threads) == 3
    assert not any(thread.is_alive() for thread in threads)
    assert all(error is None for _, error in outcomes.values())
    seqs = sorted(seq for seq, _ in outcomes.values() if seq is not None)
    assert seqs == list(range(seqs[0], seqs[0] + len(made)))
    with runtime.read_sessions() as session:
        stored = session.scalars(
            select(Decision.audit_seq).where(Decision.id.in_([m.row["id"] for m in made]))
        ).all()
    assert sorted(stored) == seqs


def test_one_writer_by_default(app: FastAPI) -> None:
    assert app.state.runtime.decision_writer.workers.count == 1
