"""The database itself refuses UPDATE and DELETE on every audit table, on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from service.audit import signer, tree
from service.audit.tree_models import AuditSubtree
from tests.audit.conftest import LogRuntime, append_events, tx

pytestmark = pytest.mark.storage

STATEMENTS = {
    "audit_events": (
        "UPDATE audit_events SET outcome = 'allow'",
        "DELETE FROM audit_events WHERE seq = 1",
    ),
    "audit_event_subjects": (
        "UPDATE audit_event_subjects SET pseudonym = 'ps_other'",
        "DELETE FROM audit_event_subjects",
    ),
    "audit_tree_heads": (
        "UPDATE audit_tree_heads SET signed_at = '2000-01-01T00:00:00.000000Z'",
        "DELETE FROM audit_tree_heads",
    ),
    "audit_subtrees": ("UPDATE audit_subtrees SET level = level", "DELETE FROM audit_subtrees"),
    "audit_signing_keys": (
        "UPDATE audit_signing_keys SET registered_at = registered_at",
        "DELETE FROM audit_signing_keys",
    ),
}


@pytest.fixture
def filled(log_runtime: LogRuntime, monkeypatch: pytest.MonkeyPatch) -> LogRuntime:
    monkeypatch.setattr(tree, "MIN_LEVEL", 1)  # so that subtree rows exist
    append_events(log_runtime, 4, subjects=["ps_a", "ps_b"])
    signer.sign_tree_head(log_runtime)
    with tx(log_runtime.read_sessions) as session:
        assert session.scalar(select(func.count()).select_from(AuditSubtree)) == 3
    return log_runtime


@pytest.mark.parametrize("table", sorted(STATEMENTS))
def test_update_and_delete_are_refused(filled: LogRuntime, table: str) -> None:
    count = text(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
    with filled.db.connect() as connection:
        before = connection.execute(count).scalar_one()
    assert before > 0
    for statement in STATEMENTS[table]:
        with pytest.raises(DBAPIError, match="append-only"), filled.db.begin() as connection:
            connection.execute(text(statement))
    if filled.db.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"), filled.db.begin() as connection:
            connection.execute(text(f"TRUNCATE {table} CASCADE"))
    with filled.db.connect() as connection:
        assert connection.execute(count).scalar_one() == before
