"""agreement_versions.suspended_by: the organisation that suspended a version.

A suspension is one party's call (a breach, an incident); it is lifted by that party, not
by the others. NULL for versions never suspended, and for versions suspended before this
migration (which any party may then resume, as before).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 14:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# ALTER TABLE in place on SQLite too (recreate="never"): rebuilding the table would drop
# it, which its referenced rows (parties, approvals) refuse with foreign keys on.
def upgrade() -> None:
    with op.batch_alter_table("agreement_versions", recreate="never") as batch_op:
        batch_op.add_column(sa.Column("suspended_by", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agreement_versions", recreate="never") as batch_op:
        batch_op.drop_column("suspended_by")
