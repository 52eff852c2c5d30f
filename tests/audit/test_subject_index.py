"""Every event's subjects are indexed once each in audit_event_subjects, however the event
was written (on PostgreSQL by a trigger on audit_events, migration 0005)."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from service.audit.models import AuditEventSubject
from tests.audit.conftest import LogRuntime, append_events


def indexed(runtime: LogRuntime) -> set[tuple[int, str]]:
    with runtime.read_sessions() as session:
        rows = session.execute(select(AuditEventSubject.seq, AuditEventSubject.pseudonym))
        return {(seq, pseudonym) for seq, pseudonym in rows}


def test_appended_events_index_each_subject_once(log_runtime: LogRuntime) -> None:
    (repeated,) = append_events(log_runtime, 1, subjects=["ps_a", "ps_b", "ps_a"])
    (alone,) = append_events(log_runtime, 1, subjects=["ps_c"])
    (none,) = append_events(log_runtime, 1, subjects=[])
    assert indexed(log_runtime) == {(repeated, "ps_a"), (repeated, "ps_b"), (alone, "ps_c")}
    assert none not in {seq for seq, _ in indexed(log_runtime)}


def test_a_group_of_events_is_indexed_in_one_go(log_runtime: LogRuntime) -> None:
    seqs = append_events(log_runtime, 40, subjects=["ps_x", "ps_y"])
    assert indexed(log_runtime) == {(seq, p) for seq in seqs for p in ("ps_x", "ps_y")}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_indexes_events_inserted_by_hand(log_runtime: LogRuntime) -> None:
    """The trigger, not the service, writes the rows: an event inserted without the
    service (a bulk load) is indexed too."""
    (seq,) = append_events(log_runtime, 1, subjects=["ps_a"])
    with log_runtime.db.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_events SELECT seq + 1 AS seq, gen_random_uuid()::text, "
                "occurred_at, action, actor_subject, actor_role, actor_org, resource_type, "
                "resource_id, agreement_id, agreement_version, purpose, outcome, reasons, "
                "minimisation, ethics_review, policy_revision, request_id, "
                '\'["ps_q", "ps_q", "ps_r"]\'::json, details, leaf_hash '
                "FROM audit_events WHERE seq = :seq"
            ),
            {"seq": seq},
        )
    assert indexed(log_runtime) == {(seq, "ps_a"), (seq + 1, "ps_q"), (seq + 1, "ps_r")}
