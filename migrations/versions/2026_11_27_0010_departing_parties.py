"""agreement_versions.departing: the parties an amendment drops, who approve it too.

An amendment that removes a party of the version in force needed only the remaining
parties' approval, so the others could push a party out of an agreement it had signed.
At submission the dropped parties are recorded here, and the amendment awaits their
approval as well. Existing versions get an empty list.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# ALTER TABLE in place on SQLite too (recreate="never"): rebuilding the table would drop
# it, which its referenced rows (parties, approvals) refuse with foreign keys on.
def upgrade() -> None:
    with op.batch_alter_table("agreement_versions", recreate="never") as batch_op:
        batch_op.add_column(sa.Column("departing", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("agreement_versions", recreate="never") as batch_op:
        batch_op.drop_column("departing")
