"""Audit tables. The database refuses UPDATE and DELETE on events and tree heads."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from service.core.database import Base

_BigInt = BigInteger().with_variant(Integer, "sqlite")


class AuditEvent(Base):
    """One leaf of the log; `seq` is its 0-based leaf index in the Merkle tree."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    occurred_at: Mapped[str] = mapped_column(String(32), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    actor_subject: Mapped[str] = mapped_column(String(200), index=True)
    actor_role: Mapped[str] = mapped_column(String(32))
    actor_org: Mapped[str] = mapped_column(String(64), index=True)
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    agreement_id: Mapped[str | None] = mapped_column(String(36), index=True, nullable=True)
    agreement_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    purpose: Mapped[str | None] = mapped_column(String(128), index=True, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), index=True)
    reasons: Mapped[list[str]] = mapped_column()
    minimisation: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    ethics_review: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    policy_revision: Mapped[str | None] = mapped_column(String(80), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    subjects: Mapped[list[str]] = mapped_column()
    details: Mapped[dict[str, Any]] = mapped_column()
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditEventSubject(Base):
    """Index of subject pseudonyms named by an event, for the auditor's subject search."""

    __tablename__ = "audit_event_subjects"
    # Keyed by what the search asks for; on SQLite the table is that key (migration 0008).
    __table_args__ = (PrimaryKeyConstraint("pseudonym", "seq"), {"sqlite_with_rowid": False})

    # Written only with its event, which can never go away: no foreign key to check per
    # row (migration 0006).
    seq: Mapped[int] = mapped_column(_BigInt, autoincrement=False)
    pseudonym: Mapped[str] = mapped_column(String(80))


class AuditHead(Base):
    """A single row holding the log's size; updating it serialises appenders."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(_BigInt)


class TreeHead(Base):
    __tablename__ = "audit_tree_heads"

    size: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    signed_at: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary(64))
