"""Drop ix_decisions_requester_org: the unique (requester_org, idempotency_key) index
already serves every lookup by requester_org (its leading column), and each decision paid
for keeping the second one up to date.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 00:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_requester_org"))


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_decisions_requester_org"), ["requester_org"], unique=False
        )
