"""Initial schema: registry, agreements, reviews, consents, decisions and the audit log.

The audit tables and the consent history are append-only: triggers refuse UPDATE and
DELETE on both SQLite and PostgreSQL.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 17:31:33.341885
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("audit_events", "audit_event_subjects", "audit_tree_heads", "consent_events")


def _protect(table: str) -> None:
    """Refuse UPDATE and DELETE on an append-only table."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{table} is append-only' USING ERRCODE = 'insufficient_privilege';
            END $$;
            """
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )


def _unprotect(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("occurred_at", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("actor_subject", sa.String(length=200), nullable=False),
        sa.Column("actor_role", sa.String(length=32), nullable=False),
        sa.Column("actor_org", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("agreement_id", sa.String(length=36), nullable=True),
        sa.Column("agreement_version", sa.Integer(), nullable=True),
        sa.Column("purpose", sa.String(length=128), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("minimisation", sa.JSON(), nullable=True),
        sa.Column("ethics_review", sa.JSON(), nullable=True),
        sa.Column("policy_revision", sa.String(length=80), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("subjects", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_events_event_id")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_actor_org"), ["actor_org"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_events_actor_subject"), ["actor_subject"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_events_agreement_id"), ["agreement_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_events_occurred_at"), ["occurred_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_events_outcome"), ["outcome"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_purpose"), ["purpose"], unique=False)

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.create_table(
        "audit_tree_heads",
        sa.Column(
            "size",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("signed_at", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=False),
        sa.PrimaryKeyConstraint("size", name=op.f("pk_audit_tree_heads")),
    )
    op.create_table(
        "data_categories",
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("parent_code", sa.String(length=128), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("sensitive", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_code"],
            ["data_categories.code"],
            name=op.f("fk_data_categories_parent_code_data_categories"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_data_categories")),
    )
    with op.batch_alter_table("data_categories", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_categories_parent_code"), ["parent_code"], unique=False
        )

    op.create_table(
        "decisions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agreement_id", sa.String(length=36), nullable=False),
        sa.Column("agreement_version", sa.Integer(), nullable=True),
        sa.Column("purpose", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("requester_org", sa.String(length=64), nullable=False),
        sa.Column("requester_subject", sa.String(length=200), nullable=False),
        sa.Column("allow", sa.Boolean(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("obligations", sa.JSON(), nullable=False),
        sa.Column("subject_results", sa.JSON(), nullable=False),
        sa.Column("policy_revision", sa.String(length=80), nullable=False),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("input_document", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audit_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint(
            "requester_org", "idempotency_key", name=op.f("uq_decisions_requester_org")
        ),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_decisions_agreement_id"), ["agreement_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_decisions_requester_org"), ["requester_org"], unique=False
        )

    op.create_table(
        "organisations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("sector", sa.String(length=32), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organisations")),
    )
    op.create_table(
        "purposes",
        sa.Column("code", sa.String(length=128), nullable=False),
        sa.Column("parent_code", sa.String(length=128), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_code"], ["purposes.code"], name=op.f("fk_purposes_parent_code_purposes")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_purposes")),
    )
    with op.batch_alter_table("purposes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_purposes_parent_code"), ["parent_code"], unique=False)

    op.create_table(
        "agreements",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("created_by_org", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        sa.Column("in_force_version", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_org"],
            ["organisations.id"],
            name=op.f("fk_agreements_created_by_org_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreements")),
    )
    op.create_table(
        "audit_event_subjects",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pseudonym", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(
            ["seq"], ["audit_events.seq"], name=op.f("fk_audit_event_subjects_seq_audit_events")
        ),
        sa.PrimaryKeyConstraint("seq", "pseudonym", name=op.f("pk_audit_event_subjects")),
    )
    with op.batch_alter_table("audit_event_subjects", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_event_subjects_pseudonym"), ["pseudonym"], unique=False
        )

    op.create_table(
        "consents",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("subject_pseudonym", sa.String(length=80), nullable=False),
        sa.Column("controller_org", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("categories", sa.JSON(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("subject_is_minor", sa.Boolean(), nullable=False),
        sa.Column("guardian", sa.JSON(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["controller_org"],
            ["organisations.id"],
            name=op.f("fk_consents_controller_org_organisations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consents_controller_org"), ["controller_org"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_consents_subject_pseudonym"), ["subject_pseudonym"], unique=False
        )

    op.create_table(
        "data_fields",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("category_code", sa.String(length=128), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("sensitive", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_code"],
            ["data_categories.code"],
            name=op.f("fk_data_fields_category_code_data_categories"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_data_fields")),
    )
    with op.batch_alter_table("data_fields", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_data_fields_category_code"), ["category_code"], unique=False
        )

    op.create_table(
        "agreement_versions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agreement_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("status_reason", sa.String(length=1000), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=4000), nullable=False),
        sa.Column("legal_basis", sa.String(length=32), nullable=False),
        sa.Column("consent_required", sa.Boolean(), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("minimisation_mode", sa.String(length=8), nullable=False),
        sa.Column("min_cohort", sa.Integer(), nullable=False),
        sa.Column("pseudonymisation_required", sa.Boolean(), nullable=False),
        sa.Column("jurisdiction", sa.String(length=32), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("review_required", sa.Boolean(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["agreements.id"],
            name=op.f("fk_agreement_versions_agreement_id_agreements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreement_versions")),
        sa.UniqueConstraint(
            "agreement_id", "version", name=op.f("uq_agreement_versions_agreement_id")
        ),
    )
    with op.batch_alter_table("agreement_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agreement_versions_agreement_id"), ["agreement_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_agreement_versions_status"), ["status"], unique=False)

    op.create_table(
        "consent_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("consent_id", sa.String(length=36), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("actor_subject", sa.String(length=200), nullable=False),
        sa.Column("actor_org", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"], ["consents.id"], name=op.f("fk_consent_events_consent_id_consents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_events")),
        sa.UniqueConstraint("consent_id", "revision", name=op.f("uq_consent_events_consent_id")),
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_events_consent_id"), ["consent_id"], unique=False
        )

    op.create_table(
        "agreement_approvals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("version_id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.String(length=2000), nullable=False),
        sa.Column("actor_subject", sa.String(length=200), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_agreement_approvals_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["agreement_versions.id"],
            name=op.f("fk_agreement_approvals_version_id_agreement_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreement_approvals")),
        sa.UniqueConstraint(
            "version_id", "organisation_id", name=op.f("uq_agreement_approvals_version_id")
        ),
    )
    with op.batch_alter_table("agreement_approvals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agreement_approvals_version_id"), ["version_id"], unique=False
        )

    op.create_table(
        "agreement_parties",
        sa.Column("version_id", sa.String(length=36), nullable=False),
        sa.Column("organisation_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_agreement_parties_organisation_id_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["agreement_versions.id"],
            name=op.f("fk_agreement_parties_version_id_agreement_versions"),
        ),
        sa.PrimaryKeyConstraint(
            "version_id", "organisation_id", "role", name=op.f("pk_agreement_parties")
        ),
    )
    with op.batch_alter_table("agreement_parties", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agreement_parties_organisation_id"), ["organisation_id"], unique=False
        )

    op.create_table(
        "ethics_reviews",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agreement_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.String(length=36), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewer_subject", sa.String(length=200), nullable=False),
        sa.Column("reviewer_org", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["agreements.id"],
            name=op.f("fk_ethics_reviews_agreement_id_agreements"),
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_org"],
            ["organisations.id"],
            name=op.f("fk_ethics_reviews_reviewer_org_organisations"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["agreement_versions.id"],
            name=op.f("fk_ethics_reviews_version_id_agreement_versions"),
        ),
        sa.UniqueConstraint("version_id", "ordinal", name=op.f("uq_ethics_reviews_version_id")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ethics_reviews")),
    )
    with op.batch_alter_table("ethics_reviews", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ethics_reviews_agreement_id"), ["agreement_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_ethics_reviews_version_id"), ["version_id"], unique=False
        )

    op.execute("INSERT INTO audit_head (id, size) VALUES (1, 0)")
    for table in APPEND_ONLY:
        _protect(table)


def downgrade() -> None:
    for table in APPEND_ONLY:
        _unprotect(table)
    with op.batch_alter_table("ethics_reviews", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ethics_reviews_version_id"))
        batch_op.drop_index(batch_op.f("ix_ethics_reviews_agreement_id"))

    op.drop_table("ethics_reviews")
    with op.batch_alter_table("agreement_parties", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agreement_parties_organisation_id"))

    op.drop_table("agreement_parties")
    with op.batch_alter_table("agreement_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agreement_approvals_version_id"))

    op.drop_table("agreement_approvals")
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_events_consent_id"))

    op.drop_table("consent_events")
    with op.batch_alter_table("agreement_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agreement_versions_status"))
        batch_op.drop_index(batch_op.f("ix_agreement_versions_agreement_id"))

    op.drop_table("agreement_versions")
    with op.batch_alter_table("data_fields", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_fields_category_code"))

    op.drop_table("data_fields")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consents_subject_pseudonym"))
        batch_op.drop_index(batch_op.f("ix_consents_controller_org"))

    op.drop_table("consents")
    with op.batch_alter_table("audit_event_subjects", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_subjects_pseudonym"))

    op.drop_table("audit_event_subjects")
    op.drop_table("agreements")
    with op.batch_alter_table("purposes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_purposes_parent_code"))

    op.drop_table("purposes")
    op.drop_table("organisations")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_requester_org"))
        batch_op.drop_index(batch_op.f("ix_decisions_agreement_id"))

    op.drop_table("decisions")
    with op.batch_alter_table("data_categories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_data_categories_parent_code"))

    op.drop_table("data_categories")
    op.drop_table("audit_tree_heads")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_purpose"))
        batch_op.drop_index(batch_op.f("ix_audit_events_outcome"))
        batch_op.drop_index(batch_op.f("ix_audit_events_occurred_at"))
        batch_op.drop_index(batch_op.f("ix_audit_events_agreement_id"))
        batch_op.drop_index(batch_op.f("ix_audit_events_actor_subject"))
        batch_op.drop_index(batch_op.f("ix_audit_events_actor_org"))
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))

    op.drop_table("audit_events")
