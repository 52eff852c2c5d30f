"""Appending is part of the caller's transaction, however that transaction began: the
reserved leaf indexes and the events commit together or not at all, and the audit head
stays locked until then. (On PostgreSQL a transaction whose first work is the append sends
BEGIN with the reservation, in one round trip; these tests hold that path to the same
guarantees as the ordinary one.)"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.audit import log as audit
from service.audit.actions import AuditAction, Outcome
from service.audit.models import AuditEvent, AuditHead
from tests.audit.conftest import ACTOR, LogRuntime, append_events, tx


class Boom(Exception):
    pass


def log_state(runtime: LogRuntime) -> tuple[int, int]:
    with runtime.read_sessions() as session:
        head = session.scalar(select(AuditHead.size))
        events = session.scalar(select(func.count()).select_from(AuditEvent))
    return int(head or 0), int(events or 0)


def append_first(session: Session, runtime: LogRuntime) -> None:
    """An append as the transaction's first statement."""
    assert not session.in_transaction()
    record = audit.EventRecord(AuditAction.DECISION_MADE, "decision", "d-x", outcome=Outcome.ALLOW)
    audit.append(session, ACTOR, record, runtime.clock.now())


def append_then_fail(runtime: LogRuntime) -> None:
    with tx(runtime.sessions) as session:
        append_first(session, runtime)
        raise Boom


def test_a_rolled_back_append_leaves_no_trace(log_runtime: LogRuntime) -> None:
    append_events(log_runtime, 2)
    before = log_state(log_runtime)
    with pytest.raises(Boom):
        append_then_fail(log_runtime)
    assert log_state(log_runtime) == before
    assert append_events(log_runtime, 1) == [before[0]]  # no gap: the next index is reused


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_head_stays_locked_until_the_appending_transaction_ends(
    log_runtime: LogRuntime,
) -> None:
    with tx(log_runtime.sessions) as session:
        append_first(session, log_runtime)
        with log_runtime.db.connect() as other:
            other.execute(text("SET lock_timeout = '50ms'"))
            with pytest.raises(OperationalError):
                other.execute(text("UPDATE audit_head SET size = size WHERE id = 1"))
    assert log_state(log_runtime) == (1, 1)
    with log_runtime.db.connect() as after:  # released by the commit
        after.execute(text("SET lock_timeout = '1s'"))
        after.execute(text("UPDATE audit_head SET size = size WHERE id = 1"))
        after.rollback()
    with log_runtime.db.connect() as pooled:  # and no connection went back mid-transaction
        driver = pooled.connection.driver_connection
        assert driver is not None
        status = driver.info.transaction_status.name
    assert status == "IDLE"
