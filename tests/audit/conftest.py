"""Audit fixtures: a light runtime over a fresh database, and events appended via the log."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from service.audit import log as audit
from service.audit.actions import AuditAction, Outcome
from service.core.clock import Clock
from service.core.database import build_engine, session_factory, transaction
from service.core.deps import Actor
from service.core.identity import Principal, Role
from service.core.settings import Settings
from tests.support.clock import MutableClock

tx = contextlib.contextmanager(transaction)


@dataclass
class LogRuntime:
    """The parts of the runtime the audit log needs (no policy engine)."""

    settings: Settings
    db: Engine
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    clock: Clock


@pytest.fixture
def log_runtime(settings: Settings, clock: MutableClock) -> Iterator[LogRuntime]:
    engine = build_engine(settings.database_url, 5)
    yield LogRuntime(
        settings, engine, session_factory(engine), session_factory(engine, read_only=True), clock
    )
    engine.dispose()


ACTOR = Actor(Principal("partner@uni-lab", Role.PARTNER, "uni-lab"), "req-1")


def append_events(runtime: LogRuntime, count: int, **fields: Any) -> list[int]:
    """Append `count` events through the service's write path, one transaction each batch."""
    seqs: list[int] = []
    with tx(runtime.sessions) as session:
        for i in range(count):
            record = audit.EventRecord(
                fields.get("action", AuditAction.DECISION_MADE),
                "decision",
                f"d-{i}",
                outcome=fields.get("outcome", Outcome.ALLOW if i % 3 else Outcome.DENY),
                agreement_id=fields.get("agreement_id", "agr-1"),
                agreement_version=fields.get("agreement_version", 1),
                purpose=fields.get("purpose", "research.public_health"),
                reasons=fields.get("reasons", [] if i % 3 else ["consent_missing"]),
                minimisation={"requested": ["postcode"], "permitted": ["postcode"], "dropped": []},
                policy_revision="rev-1",
                subjects=fields.get("subjects", ()),
                details={"kind": "single", "n": i},
            )
            actor = fields.get("actor", ACTOR)
            seqs.append(audit.append(session, actor, record, runtime.clock.now()))
    return seqs


AUDIT_TABLES = (
    "audit_events",
    "audit_event_subjects",
    "audit_tree_heads",
    "audit_subtrees",
    "audit_signing_keys",
)


@contextlib.contextmanager
def tampering(engine: Engine) -> Iterator[Connection]:
    """A transaction that bypasses the append-only triggers on purpose, as an attacker would."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Superuser only: triggers (and FK checks) do not fire for this transaction.
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        else:
            names = connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            ).scalars()
            for name in list(names):
                connection.exec_driver_sql(f'DROP TRIGGER "{name}"')
        yield connection
