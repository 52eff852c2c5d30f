"""Fail closed: whatever goes wrong in evaluation or recording, no allow leaves."""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from service.app import create_app
from service.audit.models import AuditEvent
from service.core.settings import Settings
from service.decisions.bundle import follow
from service.decisions.engines import PolicyError, PolicyTimeout, load_bundle
from service.decisions.engines.base import DECISION_ENTRYPOINT
from service.decisions.engines.embedded import EmbeddedEngine
from service.decisions.models import Decision
from tests.support.api import Api
from tests.support.clock import MutableClock


class FaultyEngine:
    """The real embedded engine, with decision evaluations sabotaged on demand."""

    name = "embedded"

    def __init__(self, inner: EmbeddedEngine) -> None:
        self.inner = inner
        self.fault: str | None = None
        self.reload_midway: list[Any] = []  # bundles loaded, one per evaluation, after it
        self.used: list[str] = []  # the revision each decision evaluation was made under

    @property
    def revision(self) -> str:
        return self.inner.revision

    def load(self, bundle: Any) -> None:
        self.inner.load(bundle)

    def close(self) -> None:
        self.inner.close()

    def evaluate(self, entrypoint: str, input_document: Mapping[str, Any]) -> Any:
        if entrypoint == DECISION_ENTRYPOINT:
            self.used.append(self.inner.revision)
        if entrypoint == DECISION_ENTRYPOINT and self.reload_midway:
            value = self.inner.evaluate(entrypoint, input_document)
            self.inner.load(self.reload_midway.pop(0))  # an operator's reload, meanwhile
            return value
        if entrypoint != DECISION_ENTRYPOINT or self.fault is None:
            return self.inner.evaluate(entrypoint, input_document)
        if self.fault == "error":
            raise PolicyError("engine crashed")
        if self.fault == "timeout":
            raise PolicyTimeout("too slow")
        real = self.inner.evaluate(entrypoint, input_document)
        obligations = real["obligations"]
        withdrawn = {"code": "consent_withdrawn", "message": "The subject withdrew consent"}
        return {
            "not_a_decision": {"allow": True},
            "allow_string": {**real, "allow": "true"},
            "allow_without_subjects": {**real, "allow": True, "subjects": []},
            "reasons_not_list": {**real, "allow": True, "reasons": "none"},
            "subject_swapped": {
                **real,
                "allow": True,
                "subjects": [{**s, "subject": "ps_other", "allow": True} for s in real["subjects"]],
            },
            "allowed_subject_with_reasons": {
                **real,
                "subjects": [{**s, "reasons": [withdrawn]} for s in real["subjects"]],
            },
            "allow_with_reasons": {**real, "reasons": [withdrawn]},
            "deny_without_reasons": {**real, "allow": False},
            "field_not_requested": {**real, "obligations": {**obligations, "permitted_fields": [
                *obligations["permitted_fields"], "nhs_number"]}},
            "field_not_a_string": {**real, "obligations": {**obligations, "permitted_fields": [
                *obligations["permitted_fields"], 7]}},
            "field_permitted_and_dropped": {**real, "obligations": {**obligations,
                "dropped_fields": obligations["permitted_fields"]}},
            "pseudonymise_string": {**real, "obligations": {**obligations, "pseudonymise": "no"}},
            "pseudonymise_missing": {**real, "obligations": {
                k: v for k, v in obligations.items() if k != "pseudonymise"}},
            "retention_string": {**real, "obligations": {**obligations,
                "retention_days": "forever"}},
            "retention_negative": {**real, "obligations": {**obligations, "retention_days": -1}},
            "min_cohort_boolean": {**real, "obligations": {**obligations, "min_cohort": True}},
            "condition_not_a_string": {**real, "obligations": {**obligations,
                "ethics_conditions": [{"text": "aggregate only"}]}},
        }[self.fault]  # fmt: skip


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(Settings().policy_dir, target)
    return target


@pytest.fixture
def settings(database_url: str, policy_dir: Path) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        sweep_interval_seconds=0,
        policy_dir=policy_dir,
        database_pool_size=5,
    )


@pytest.fixture
def faulty(settings: Settings) -> FaultyEngine:
    return FaultyEngine(EmbeddedEngine(load_bundle(settings.policy_dir)))


@pytest.fixture
def app(settings: Settings, clock: MutableClock, faulty: FaultyEngine) -> FastAPI:
    return create_app(settings, clock=clock, policy=faulty)


@pytest.fixture
def agreement(world: Api, clock: MutableClock) -> str:
    agreement_id = world.active(clock.now())
    world.consent(clock.now(), "subject-1")
    return agreement_id


def ask(api: Api, agreement_id: str, idempotency_key: str | None = None) -> Any:
    return api.post(
        "/v1/decisions",
        "partner",
        "uni-lab",
        headers={} if idempotency_key is None else {"Idempotency-Key": idempotency_key},
        json={
            "agreement_id": agreement_id,
            "purpose": "research.public_health",
            "fields": ["postcode"],
            "subjects": ["subject-1"],
        },
    )


def counts(api: Api) -> tuple[int, int]:
    runtime = api.client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.read_sessions() as session:
        decisions = session.scalar(select(func.count()).select_from(Decision))
        failed = session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "decision.failed")
        )
    return int(decisions or 0), int(failed or 0)


@pytest.mark.parametrize(
    "fault",
    [
        "error",
        "timeout",
        "not_a_decision",
        "allow_string",
        "allow_without_subjects",
        "reasons_not_list",
        "subject_swapped",
        "allowed_subject_with_reasons",
        "allow_with_reasons",
        "deny_without_reasons",
        "field_not_requested",
        "field_not_a_string",
        "field_permitted_and_dropped",
        "pseudonymise_string",
        "pseudonymise_missing",
        "retention_string",
        "retention_negative",
        "min_cohort_boolean",
        "condition_not_a_string",
    ],
)
def test_engine_failure_or_nonsense_denies_and_is_recorded(
    world: Api, agreement: str, faulty: FaultyEngine, fault: str
) -> None:
    assert ask(world, agreement).json()["allow"] is True
    faulty.fault = fault
    decision = world.ok(ask(world, agreement))
    assert decision["allow"] is False
    assert [r["code"] for r in decision["reasons"]] == ["policy_unavailable"]
    assert decision["subjects"][0]["allow"] is False
    assert decision["obligations"]["permitted_fields"] == []
    assert counts(world) == (2, 1)
    faulty.fault = None
    assert ask(world, agreement).json()["allow"] is True


def test_a_retry_after_a_failed_evaluation_is_decided_afresh(
    world: Api, agreement: str, faulty: FaultyEngine
) -> None:
    """The failed decision is recorded, but not kept under its idempotency key; the next
    decision is, and a retry of it replays it."""
    faulty.fault = "error"
    failed = world.ok(ask(world, agreement, "order-17"))
    assert [r["code"] for r in failed["reasons"]] == ["policy_unavailable"]
    faulty.fault = None
    retried = world.ok(ask(world, agreement, "order-17"))
    assert retried["allow"] is True
    assert retried["decision_id"] != failed["decision_id"]
    assert world.ok(ask(world, agreement, "order-17"))["decision_id"] == retried["decision_id"]
    assert counts(world) == (2, 1)


def extra_bundle(policy_dir: Path, name: str) -> Any:
    """The bundle with one more (unused) module: another revision, the same decisions."""
    (policy_dir / "accord" / f"{name}.rego").write_text(
        f"package accord.{name}\nimport rego.v1\nanswer := 42\n"
    )
    return load_bundle(policy_dir)


def test_a_decision_records_the_revision_it_was_made_under(
    world: Api, agreement: str, faulty: FaultyEngine, policy_dir: Path
) -> None:
    """A reload during an evaluation: the decision is made again under the new revision,
    and records it. A second reload during that one too: it fails closed."""
    faulty.reload_midway = [extra_bundle(policy_dir, "extra")]
    decision = world.ok(ask(world, agreement))
    assert decision["allow"] is True
    assert faulty.used == [faulty.used[0], decision["policy_revision"]]
    assert faulty.used[0] != decision["policy_revision"]

    faulty.used = []
    faulty.reload_midway = [extra_bundle(policy_dir, "more"), extra_bundle(policy_dir, "most")]
    failed = world.ok(ask(world, agreement))
    assert [r["code"] for r in failed["reasons"]] == ["policy_unavailable"]
    assert len(set(faulty.used)) == 2
    assert world.ok(ask(world, agreement))["policy_revision"] == faulty.inner.revision


def test_failure_to_record_means_no_answer(
    world: Api, agreement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("disk full"))

    monkeypatch.setattr("service.audit.log.append_many", refuse)
    response = ask(world, agreement)
    assert response.status_code == 503
    body = response.json()
    assert "allow" not in body
    assert "INSERT" not in response.text
    assert "disk full" not in response.text
    assert counts(world) == (0, 0)


def test_a_decision_not_recorded_in_time_gets_no_answer(
    world: Api, agreement: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that never calls back (stuck on the database) leaves no request hanging."""
    writer = world.client.app.state.runtime.decision_writer  # type: ignore[attr-defined]
    monkeypatch.setattr(writer, "_wait", 0.2)
    monkeypatch.setattr(writer, "submit_many", lambda decisions: None)
    response = ask(world, agreement)
    assert response.status_code == 503
    assert "allow" not in response.json()
    assert "in time" in response.json()["detail"]


def test_policy_reload_switches_revision_and_refuses_bad_bundles(
    world: Api, agreement: str, policy_dir: Path
) -> None:
    before = world.ok(world.get("/v1/policies", "auditor", "council"))["revision"]
    assert world.post("/v1/policies/reload", "steward", "uni-lab").status_code == 403

    broken = policy_dir / "accord" / "broken.rego"
    broken.write_text("package accord.broken\nimport rego.v1\nx if {\n")
    refused = world.post("/v1/policies/reload", "admin", "accord")
    assert refused.status_code == 422
    assert world.ok(world.get("/v1/policies", "auditor", "council"))["revision"] == before
    assert ask(world, agreement).json()["allow"] is True

    # It compiles, but the service's entrypoint is gone: every decision would fail.
    broken.unlink()
    decision_module = policy_dir / "accord" / "decision" / "decision.rego"
    source = decision_module.read_text()
    decision_module.write_text(source.replace("\nresult := ", "\nrenamed_result := ", 1))
    refused = world.post("/v1/policies/reload", "admin", "accord")
    assert refused.status_code == 422
    assert "data.accord.decision.result" in refused.json()["detail"]
    assert world.ok(world.get("/v1/policies", "auditor", "council"))["revision"] == before
    assert ask(world, agreement).json()["allow"] is True
    decision_module.write_text(source)

    broken.write_text("package accord.extra\nimport rego.v1\nanswer := 42\n")
    reloaded = world.ok(world.post("/v1/policies/reload", "admin", "accord"))
    assert reloaded["revision"] != before
    decision = ask(world, agreement).json()
    assert (decision["allow"], decision["policy_revision"]) == (True, reloaded["revision"])

    runtime = world.client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.read_sessions() as session:
        actions = list(
            session.scalars(
                select(AuditEvent.action).where(AuditEvent.resource_type == "policy_bundle")
            )
        )
    assert actions == ["policy.loaded", "policy.rejected", "policy.rejected", "policy.loaded"]


def test_other_processes_follow_a_reload(
    world: Api, agreement: str, settings: Settings, clock: MutableClock, policy_dir: Path
) -> None:
    """Another worker on the same database takes the revision the reload recorded, once
    its policies/ holds it; a later edit that nobody reloaded is not taken."""
    other = create_app(settings.model_copy(update={"policy_follow_seconds": 0.05}), clock=clock)
    with TestClient(other) as client:
        runtime = other.state.runtime
        before = runtime.policy.revision
        extra_bundle(policy_dir, "extra")
        reloaded = world.ok(world.post("/v1/policies/reload", "admin", "accord"))["revision"]
        assert reloaded != before
        deadline = time.monotonic() + 10
        while runtime.policy.revision != reloaded and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.policy.revision == reloaded
        token = world.token("partner", "uni-lab")
        decided = client.post(
            "/v1/decisions",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "agreement_id": agreement,
                "purpose": "research.public_health",
                "fields": ["postcode"],
                "subjects": ["subject-1"],
            },
        ).json()
        assert decided["policy_revision"] == reloaded

    # A process whose policies/ no longer holds the revision loaded last stays as it is.
    lagging = world.client.app.state.runtime  # type: ignore[attr-defined]
    edited = extra_bundle(policy_dir, "unreloaded")
    lagging.policy.load(edited)
    assert not follow(lagging)
    assert lagging.policy.revision == edited.revision
