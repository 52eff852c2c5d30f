"""PostgreSQL: compress the large JSON of batch decisions with lz4 instead of pglz.

A decision over 10,000 subjects stores its policy input (~4 MB), its per-subject results
(~1.5 MB) and an audit event naming every subject (~0.7 MB). PostgreSQL compresses values
that large on insert, by default with pglz, which costs the committing backend tens of
milliseconds per batch; lz4 compresses them several times faster. Only new values are
affected (nothing is rewritten). Skipped where the server was built without lz4, and on
SQLite, which does not compress.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 21:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("decisions", "input_document"),
    ("decisions", "subject_results"),
    ("audit_events", "subjects"),
)


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    methods = bind.execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    return bool(methods) and "lz4" in methods


def _set_compression(method: str) -> None:
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")


def upgrade() -> None:
    if _lz4_available():
        _set_compression("lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _set_compression("default")
