"""PostgreSQL: fill audit_event_subjects from each statement's new audit events.

An AFTER INSERT statement-level trigger reads the inserted events (a transition table)
and adds one row per distinct pseudonym in each event's `subjects`. The writer then sends
only the events: one COPY fewer per group of decisions, two round trips a transaction
(bench/README.md). SQLite keeps the rows written by the service (service/audit/log.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 03:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION audit_event_subjects_fill() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO audit_event_subjects (seq, pseudonym)
            SELECT DISTINCT event.seq, subject.pseudonym
            FROM new_events AS event
            CROSS JOIN LATERAL json_array_elements_text(event.subjects) AS subject(pseudonym);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_events_fill_subjects AFTER INSERT ON audit_events "
        "REFERENCING NEW TABLE AS new_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_subjects_fill()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER audit_events_fill_subjects ON audit_events")
    op.execute("DROP FUNCTION audit_event_subjects_fill()")
