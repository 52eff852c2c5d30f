"""Drop the foreign key from audit_event_subjects to audit_events.

The subject index rows are only ever written with their event, in the statement or the
transaction that inserts it (on PostgreSQL by the trigger of migration 0005, from the
inserted rows themselves; on SQLite by the service), and neither table can be updated,
deleted from or truncated: a row cannot name an event that does not exist. The key
checked that again, one index probe per row: about 30 ms of a 10,000-subject batch
decision's commit on PostgreSQL (bench/README.md). The index is derived data: the events
it points to, subjects included, are what the log's hashes protect.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 05:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = "fk_audit_event_subjects_seq_audit_events"
_TABLE = "audit_event_subjects"


def _sqlite_rebuilt(change: str) -> None:
    """SQLite cannot alter a constraint: the table is copied without (or with) the key,
    and the copy must be made append-only again, as migration 0001 made the original."""
    with op.batch_alter_table(_TABLE, schema=None, recreate="always") as batch_op:
        if change == "drop":
            batch_op.drop_constraint(_KEY, type_="foreignkey")
        else:
            batch_op.create_foreign_key(_KEY, "audit_events", ["seq"], ["seq"])
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_{verb.lower()} BEFORE {verb} ON {_TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{_TABLE} is append-only'); END"
        )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuilt("drop")
    else:
        op.drop_constraint(_KEY, _TABLE, type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_rebuilt("create")
    else:
        op.create_foreign_key(_KEY, _TABLE, "audit_events", ["seq"], ["seq"])
