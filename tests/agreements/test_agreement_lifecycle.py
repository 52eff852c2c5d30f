"""The agreement lifecycle through the HTTP API, including every refusal."""

from __future__ import annotations

from datetime import timedelta

from tests.support.api import Api
from tests.support.clock import MutableClock


def test_joint_approval_then_activation(world: Api, clock: MutableClock) -> None:
    agreement_id = world.draft(clock.now())
    path = world.version_path(agreement_id)
    submitted = world.ok(world.post(f"{path}/submit", "steward", "uni-lab"))
    assert submitted["status"] == "pending_approval"
    assert submitted["review_required"] is False
    assert submitted["awaiting_approval_from"] == ["health-trust", "uni-lab"]

    first = world.ok(world.post(f"{path}/approve", "steward", "uni-lab", json={"comment": "yes"}))
    assert first["status"] == "pending_approval"
    assert first["awaiting_approval_from"] == ["health-trust"]
    second = world.ok(world.post(f"{path}/approve", "steward", "health-trust", json={}))
    assert second["status"] == "approved"
    assert {a["organisation_id"] for a in second["approvals"]} == {"uni-lab", "health-trust"}

    active = world.ok(world.post(f"{path}/activate", "steward", "health-trust"))
    assert active["status"] == "active"
    agreement = world.ok(world.get(f"/v1/agreements/{agreement_id}", "partner", "uni-lab"))
    assert agreement["in_force_version"] == 1


def test_steward_cannot_approve_for_another_organisation(world: Api, clock: MutableClock) -> None:
    agreement_id = world.draft(clock.now())
    path = world.version_path(agreement_id)
    world.ok(world.post(f"{path}/submit", "steward", "uni-lab"))
    world.ok(world.post(f"{path}/approve", "steward", "uni-lab", json={}))
    again = world.post(f"{path}/approve", "steward", "uni-lab", json={})
    assert again.status_code == 409
    outsider = world.post(f"{path}/approve", "steward", "outsider", json={})
    assert outsider.status_code == 404
    status = world.ok(world.get(path, "steward", "uni-lab"))
    assert status["awaiting_approval_from"] == ["health-trust"]


def test_one_party_rejecting_rejects_the_version(world: Api, clock: MutableClock) -> None:
    agreement_id = world.draft(clock.now())
    path = world.version_path(agreement_id)
    world.ok(world.post(f"{path}/submit", "steward", "uni-lab"))
    no_comment = world.post(f"{path}/reject", "steward", "health-trust", json={})
    assert no_comment.status_code == 422
    rejected = world.ok(
        world.post(f"{path}/reject", "steward", "health-trust", json={"comment": "too broad"})
    )
    assert rejected["status"] == "rejected"
    assert rejected["status_reason"] == "too broad"
    late = world.post(f"{path}/approve", "steward", "uni-lab", json={})
    assert late.status_code == 409
    assert late.json()["type"].endswith("/invalid-transition")


def test_sensitive_data_needs_an_approving_ethics_review(world: Api, clock: MutableClock) -> None:
    now = clock.now()
    agreement_id = world.draft(
        now, purposes=[{"purpose": "research", "fields": ["diagnosis_code", "postcode"]}]
    )
    path = world.version_path(agreement_id)
    submitted = world.ok(world.post(f"{path}/submit", "steward", "uni-lab"))
    assert submitted["review_required"] is True
    approved = world.approve_all(agreement_id)
    assert approved["status"] == "pending_approval"  # every party approved, no review yet
    world.review(agreement_id, now, outcome="rejected", conditions=[])
    assert world.ok(world.get(path, "steward", "uni-lab"))["status"] == "pending_approval"
    world.review(agreement_id, now)
    assert world.ok(world.get(path, "steward", "uni-lab"))["status"] == "approved"
    reviews = world.ok(world.get(f"{path}/ethics-reviews", "auditor", "council"))
    assert [r["outcome"] for r in reviews] == ["rejected", "approved_with_conditions"]


def test_only_ethics_reviewers_record_reviews(world: Api, clock: MutableClock) -> None:
    agreement_id = world.draft(clock.now())
    path = world.version_path(agreement_id)
    world.ok(world.post(f"{path}/submit", "steward", "uni-lab"))
    body = {
        "outcome": "approved",
        "reference": "X",
        "valid_from": clock.now().isoformat(),
        "valid_until": (clock.now() + timedelta(days=1)).isoformat(),
    }
    assert world.post(f"{path}/ethics-reviews", "steward", "uni-lab", json=body).status_code == 403
    # Reviewers of a party (the recipient, the provider) may not review its agreement.
    for party in ("uni-lab", "health-trust"):
        refused = world.post(f"{path}/ethics-reviews", "ethics_reviewer", party, json=body)
        assert refused.status_code == 403
        assert "party" in refused.json()["detail"]
    reviews = world.ok(world.get(f"{path}/ethics-reviews", "auditor", "council"))
    assert reviews == []
    conditions_missing = {**body, "outcome": "approved_with_conditions"}
    response = world.post(
        f"{path}/ethics-reviews", "ethics_reviewer", "ethics-board", json=conditions_missing
    )
    assert response.status_code == 422


def test_draft_review_is_refused(world: Api, clock: MutableClock) -> None:
    agreement_id = world.draft(clock.now())
    response = world.post(
        f"{world.version_path(agreement_id)}/ethics-reviews",
        "ethics_reviewer",
        "ethics-board",
        json={
            "outcome": "approved",
            "reference": "X",
            "valid_from": clock.now().isoformat(),
            "valid_until": (clock.now() + timedelta(days=1)).isoformat(),
        },
    )
    assert response.status_code == 409


def test_suspend_resume_terminate(world: Api, clock: MutableClock) -> None:
    agreement_id = world.active(clock.now())
    base = f"/v1/agreements/{agreement_id}"
    missing_reason = world.post(f"{base}/suspend", "steward", "health-trust", json={})
    assert missing_reason.status_code == 422
    suspended = world.ok(
        world.post(f"{base}/suspend", "steward", "health-trust", json={"reason": "breach review"})
    )
    assert (suspended["status"], suspended["suspended_by"]) == ("suspended", "health-trust")
    assert (
        world.post(f"{base}/suspend", "steward", "uni-lab", json={"reason": "again"}).status_code
        == 409
    )
    # Only the party that suspended it lifts the suspension, not the one it was aimed at.
    overruled = world.post(f"{base}/resume", "steward", "uni-lab", json={"reason": "nope"})
    assert overruled.status_code == 403
    assert "health-trust" in overruled.json()["detail"]
    resumed = world.ok(
        world.post(f"{base}/resume", "steward", "health-trust", json={"reason": "resolved"})
    )
    assert (resumed["status"], resumed["suspended_by"]) == ("active", None)
    ended = world.ok(world.post(f"{base}/terminate", "steward", "uni-lab", json={"reason": "done"}))
    assert ended["status"] == "terminated"
    assert (
        world.post(f"{base}/resume", "steward", "uni-lab", json={"reason": "oops"}).status_code
        == 409
    )


def test_illegal_transitions_are_409(world: Api, clock: MutableClock) -> None:
    agreement_id = world.draft(clock.now())
    path = world.version_path(agreement_id)
    assert world.post(f"{path}/approve", "steward", "uni-lab", json={}).status_code == 409
    assert world.post(f"{path}/activate", "steward", "uni-lab").status_code == 409
    suspend = world.post(
        f"/v1/agreements/{agreement_id}/suspend", "steward", "uni-lab", json={"reason": "x"}
    )
    assert suspend.status_code == 409
    world.ok(world.post(f"{path}/submit", "steward", "uni-lab"))
    assert world.post(f"{path}/submit", "steward", "uni-lab").status_code == 409
    edit = world.patch(path, "steward", "uni-lab", json={"title": "late edit"})
    assert edit.status_code == 409


def test_drafts_are_editable_by_parties_only(world: Api, clock: MutableClock) -> None:
    agreement_id = world.draft(clock.now())
    path = world.version_path(agreement_id)
    edited = world.ok(world.patch(path, "steward", "health-trust", json={"title": "Renamed"}))
    assert edited["title"] == "Renamed"
    assert world.patch(path, "steward", "outsider", json={"title": "x"}).status_code == 404
    assert world.patch(path, "partner", "uni-lab", json={"title": "x"}).status_code == 403
    leave = world.patch(path, "steward", "uni-lab", json={"recipients": ["council"]})
    assert leave.status_code == 403


def test_server_owned_fields_cannot_be_set(world: Api, clock: MutableClock) -> None:
    body = world.terms(clock.now(), status="active", version=7, approvals=[])
    response = world.post("/v1/agreements", "steward", "uni-lab", json=body)
    assert response.status_code == 422
    assert {"body.status", "body.version", "body.approvals"} <= {
        e["location"] for e in response.json()["errors"]
    }


def test_creation_validates_references_and_party_membership(
    world: Api, clock: MutableClock
) -> None:
    now = clock.now()
    not_party = world.post("/v1/agreements", "steward", "outsider", json=world.terms(now))
    assert not_party.status_code == 403
    unknown_org = world.post(
        "/v1/agreements", "steward", "uni-lab", json=world.terms(now, providers=["nobody-here"])
    )
    assert unknown_org.status_code == 422
    unknown_field = world.post(
        "/v1/agreements",
        "steward",
        "uni-lab",
        json=world.terms(now, purposes=[{"purpose": "research", "fields": ["shoe_size"]}]),
    )
    assert unknown_field.status_code == 422
    assert "shoe_size" in unknown_field.json()["detail"]
    backwards = world.post(
        "/v1/agreements",
        "steward",
        "uni-lab",
        json=world.terms(now, valid_until=(now - timedelta(days=5)).isoformat()),
    )
    assert backwards.status_code == 422
    consent_off = world.post(
        "/v1/agreements", "steward", "uni-lab", json=world.terms(now, consent_required=False)
    )
    assert consent_off.status_code == 422
    listed = world.ok(world.get("/v1/agreements", "steward", "uni-lab"))
    assert listed["items"] == []


def test_visibility_is_limited_to_parties_and_oversight(world: Api, clock: MutableClock) -> None:
    agreement_id = world.draft(clock.now())
    for role, org, expected in [
        ("partner", "uni-lab", 200),
        ("steward", "health-trust", 200),
        ("auditor", "council", 200),
        ("ethics_reviewer", "ethics-board", 200),
        ("partner", "outsider", 404),
        ("steward", "council", 404),
    ]:
        response = world.get(f"/v1/agreements/{agreement_id}", role, org)
        assert response.status_code == expected, (role, org)
    assert world.ok(world.get("/v1/agreements", "steward", "council"))["items"] == []
    ids = [a["id"] for a in world.ok(world.get("/v1/agreements", "auditor", "council"))["items"]]
    assert ids == [agreement_id]


def test_amendment_keeps_the_version_in_force(world: Api, clock: MutableClock) -> None:
    now = clock.now()
    agreement_id = world.active(now)
    amendment = world.ok(
        world.post(
            f"/v1/agreements/{agreement_id}/amendments",
            "steward",
            "health-trust",
            json={"retention_days": 90},
        ),
        201,
    )
    assert (amendment["version"], amendment["status"]) == (2, "draft")
    assert amendment["retention_days"] == 90
    assert amendment["title"] == "Public health research"
    second = world.post(f"/v1/agreements/{agreement_id}/amendments", "steward", "uni-lab", json={})
    assert second.status_code == 409  # one open amendment at a time

    agreement = world.ok(world.get(f"/v1/agreements/{agreement_id}", "steward", "uni-lab"))
    assert agreement["in_force_version"] == 1
    v2 = world.version_path(agreement_id, 2)
    world.ok(world.post(f"{v2}/submit", "steward", "uni-lab"))
    world.approve_all(agreement_id, 2)
    assert (
        world.ok(world.get(world.version_path(agreement_id, 1), "steward", "uni-lab"))["status"]
        == "active"
    )
    world.ok(world.post(f"{v2}/activate", "steward", "uni-lab"))
    agreement = world.ok(world.get(f"/v1/agreements/{agreement_id}", "steward", "uni-lab"))
    assert agreement["in_force_version"] == 2
    assert [(v["version"], v["status"]) for v in agreement["versions"]] == [
        (1, "superseded"),
        (2, "active"),
    ]
    old = world.ok(world.get(world.version_path(agreement_id, 1), "partner", "health-trust"))
    assert old["retention_days"] == 365


def test_sweep_activates_at_valid_from_and_expires_at_valid_until(
    world: Api, clock: MutableClock, app: object
) -> None:
    from service.app import run_sweep

    now = clock.now()
    agreement_id = world.draft(
        now,
        valid_from=(now + timedelta(days=2)).isoformat(),
        valid_until=(now + timedelta(days=10)).isoformat(),
    )
    path = world.version_path(agreement_id)
    world.ok(world.post(f"{path}/submit", "steward", "uni-lab"))
    world.approve_all(agreement_id)
    early = world.post(f"{path}/activate", "steward", "uni-lab")
    assert early.status_code == 409
    runtime = app.state.runtime  # type: ignore[attr-defined]
    assert run_sweep(runtime)["activated"] == 0
    clock.advance(timedelta(days=3))
    assert run_sweep(runtime)["activated"] == 1
    assert world.ok(world.get(path, "steward", "uni-lab"))["status"] == "active"
    clock.advance(timedelta(days=8))
    assert run_sweep(runtime)["expired"] == 1
    assert world.ok(world.get(path, "steward", "uni-lab"))["status"] == "expired"


def test_refused_attempts_on_other_organisations_agreements_are_audited(
    world: Api, clock: MutableClock, app: object
) -> None:
    from sqlalchemy import select

    from service.audit.models import AuditEvent

    agreement_id = world.draft(clock.now())
    path = world.version_path(agreement_id)
    assert world.get(f"/v1/agreements/{agreement_id}", "partner", "outsider").status_code == 404
    assert world.patch(path, "steward", "outsider", json={"title": "x"}).status_code == 404
    assert world.post(f"{path}/submit", "partner", "uni-lab").status_code == 403
    runtime = app.state.runtime  # type: ignore[attr-defined]
    with runtime.read_sessions() as session:
        refused = session.execute(
            select(AuditEvent.actor_org, AuditEvent.agreement_id, AuditEvent.details)
            .where(AuditEvent.action == "access.refused")
            .order_by(AuditEvent.seq)
        ).all()
    assert [(org, aid, d["status"]) for org, aid, d in refused] == [
        ("outsider", agreement_id, 404),
        ("outsider", agreement_id, 404),
        ("uni-lab", agreement_id, 403),
    ]


def test_an_organisation_removed_by_an_amendment_no_longer_sees_the_agreement(
    world: Api, clock: MutableClock
) -> None:
    """Not by id, and not in its list (which showed the agreement, with the new terms)."""
    now = clock.now()
    agreement_id = world.active(now, providers=["health-trust", "council"])
    assert [a["id"] for a in world.ok(world.get("/v1/agreements", "steward", "council"))[
        "items"]] == [agreement_id]  # fmt: skip
    world.amend(agreement_id, providers=["health-trust"])
    # While version 1 is in force, council is still one of its parties.
    assert world.get(f"/v1/agreements/{agreement_id}", "steward", "council").status_code == 200
    assert len(world.ok(world.get("/v1/agreements", "steward", "council"))["items"]) == 1
    v2 = world.version_path(agreement_id, 2)
    world.ok(world.post(f"{v2}/submit", "steward", "uni-lab"))
    world.approve_all(agreement_id, 2)
    world.ok(world.post(f"{v2}/activate", "steward", "uni-lab"))
    assert world.get(f"/v1/agreements/{agreement_id}", "steward", "council").status_code == 404
    assert world.ok(world.get("/v1/agreements", "steward", "council"))["items"] == []
    assert len(world.ok(world.get("/v1/agreements", "steward", "health-trust"))["items"]) == 1


def test_an_amendment_that_drops_a_party_needs_its_approval_too(
    world: Api, clock: MutableClock
) -> None:
    """Joint governance: the other parties cannot push a party out of the agreement it
    signed; a party the amendment drops approves it (or rejects it) like the others."""
    now = clock.now()
    agreement_id = world.active(now, providers=["health-trust", "council"])
    world.amend(agreement_id, providers=["health-trust"])
    v2 = world.version_path(agreement_id, 2)
    submitted = world.ok(world.post(f"{v2}/submit", "steward", "uni-lab"))
    assert submitted["awaiting_approval_from"] == ["council", "health-trust", "uni-lab"]
    for org in ("health-trust", "uni-lab"):
        world.ok(world.post(f"{v2}/approve", "steward", org, json={"comment": "ok"}))
    pending = world.ok(world.get(v2, "steward", "uni-lab"))
    assert (pending["status"], pending["awaiting_approval_from"]) == (
        "pending_approval",
        ["council"],
    )
    assert (
        world.post(f"{v2}/approve", "steward", "outsider", json={"comment": "x"}).status_code == 404
    )
    rejected = world.ok(
        world.post(f"{v2}/reject", "steward", "council", json={"comment": "we stay"})
    )
    assert rejected["status"] == "rejected"
    assert world.ok(world.get(f"/v1/agreements/{agreement_id}", "steward", "council"))[
        "in_force_version"] == 1  # fmt: skip


def test_a_suspension_is_not_lifted_by_activating_an_amendment(
    world: Api, clock: MutableClock, app: object
) -> None:
    """Neither by another party's activation nor by the sweep; the suspending party may."""
    from service.app import run_sweep

    now = clock.now()
    agreement_id = world.active(now)
    base = f"/v1/agreements/{agreement_id}"
    world.amend(agreement_id, valid_from=(now + timedelta(days=1)).isoformat())
    v2 = world.version_path(agreement_id, 2)
    world.ok(world.post(f"{v2}/submit", "steward", "uni-lab"))
    world.approve_all(agreement_id, 2)
    world.ok(world.post(f"{base}/suspend", "steward", "health-trust", json={"reason": "breach"}))
    clock.advance(timedelta(days=2))
    refused = world.post(f"{v2}/activate", "steward", "uni-lab")
    assert refused.status_code == 409
    assert "health-trust" in refused.json()["detail"]
    runtime = app.state.runtime  # type: ignore[attr-defined]
    assert run_sweep(runtime)["activated"] == 0
    assert world.ok(world.get(base, "steward", "uni-lab"))["in_force_version"] == 1
    activated = world.ok(world.post(f"{v2}/activate", "steward", "health-trust"))
    assert activated["status"] == "active"
    assert world.ok(world.get(world.version_path(agreement_id, 1), "auditor", "council"))[
        "status"] == "superseded"  # fmt: skip
