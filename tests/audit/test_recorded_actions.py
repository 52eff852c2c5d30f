"""Every state change and decision leaves its audit event, through the HTTP API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from service.app import run_sweep
from service.audit.actions import AuditAction
from service.audit.models import AuditEvent
from tests.support.api import Api
from tests.support.clock import MutableClock


def events(app: FastAPI) -> list[AuditEvent]:
    runtime = app.state.runtime
    with runtime.read_sessions() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def test_each_change_and_decision_is_recorded(
    world: Api, clock: MutableClock, app: FastAPI
) -> None:
    now = clock.now()
    sensitive = [{"purpose": "research", "fields": ["diagnosis_code", "postcode"]}]
    agreement_id = world.draft(now, purposes=sensitive)
    base, v1 = f"/v1/agreements/{agreement_id}", world.version_path(agreement_id)
    world.ok(world.patch(v1, "steward", "uni-lab", json={"title": "Renamed"}))
    world.ok(world.post(f"{v1}/submit", "steward", "uni-lab"))
    world.review(agreement_id, now)
    world.approve_all(agreement_id)
    world.ok(world.post(f"{v1}/activate", "steward", "uni-lab"))
    world.ok(world.post(f"{base}/suspend", "steward", "uni-lab", json={"reason": "check"}))
    world.ok(world.post(f"{base}/resume", "steward", "uni-lab", json={"reason": "ok"}))
    world.ok(
        world.post(f"{base}/amendments", "steward", "uni-lab", json={"retention_days": 30}), 201
    )
    v2 = world.version_path(agreement_id, 2)
    world.ok(world.post(f"{v2}/submit", "steward", "uni-lab"))
    world.review(agreement_id, now, version=2)
    world.approve_all(agreement_id, 2)
    world.ok(world.post(f"{v2}/activate", "steward", "uni-lab"))

    rejected = world.draft(now)
    world.ok(world.post(f"{world.version_path(rejected)}/submit", "steward", "uni-lab"))
    world.ok(
        world.post(
            f"{world.version_path(rejected)}/reject",
            "steward",
            "health-trust",
            json={"comment": "no"},
        )
    )
    ended = world.active(now)
    world.ok(
        world.post(
            f"/v1/agreements/{ended}/terminate", "steward", "uni-lab", json={"reason": "done"}
        )
    )

    given = world.consent(now, "subject-1", valid_until=(now + timedelta(days=2)).isoformat())
    world.consent(now, "subject-2", status="refused")
    renew = {
        "valid_until": (now + timedelta(days=3)).isoformat(),
        "evidence": {"method": "web_form", "notice_version": "v2", "collected_at": now.isoformat()},
    }
    world.ok(world.post(f"/v1/consents/{given['id']}/renew", "partner", "health-trust", json=renew))
    other = world.consent(now, "subject-3")
    world.ok(world.post(f"/v1/consents/{other['id']}/withdraw", "partner", "health-trust", json={}))
    decision = world.ok(
        world.post(
            "/v1/decisions",
            "partner",
            "uni-lab",
            json={
                "agreement_id": agreement_id,
                "purpose": "research",
                "subjects": ["subject-1"],
                "fields": ["diagnosis_code", "email"],
            },
        )
    )
    world.get(f"/v1/agreements/{agreement_id}", "partner", "outsider")
    world.ok(world.patch("/v1/organisations/outsider", "admin", "accord", json={"name": "O"}))
    world.ok(
        world.post(
            "/v1/purposes",
            "admin",
            "accord",
            json={"code": "research.genomics", "label": "Genomics"},
        ),
        201,
    )
    clock.advance(timedelta(days=400))
    run_sweep(app.state.runtime)

    recorded = events(app)
    actions = {e.action for e in recorded}
    expected = set(AuditAction) - {
        AuditAction.DECISION_FAILED,  # tests/decisions/test_fail_closed_api.py
        AuditAction.POLICY_REJECTED,  # same file
        AuditAction.SIGNING_KEY_ROTATED,  # tests/audit/test_keys.py
    }
    assert {a.value for a in expected} <= actions, sorted({a.value for a in expected} - actions)

    decided: Any = next(e for e in recorded if e.resource_id == decision["decision_id"])
    assert decided.outcome == "deny"
    assert decided.agreement_version == 2
    assert decided.minimisation == {
        "requested": ["diagnosis_code", "email"],
        "permitted": decision["obligations"]["permitted_fields"],
        "dropped": decision["obligations"]["dropped_fields"],
    }
    assert decided.ethics_review["outcome"] == "approved_with_conditions"
    assert decided.policy_revision == decision["policy_revision"]
    assert decided.subjects == [decision["subjects"][0]["subject"]]
    assert "subject-1" not in str([e.__dict__ for e in recorded])
