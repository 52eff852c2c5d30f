"""A stored access decision, with the exact policy input it was decided on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.core.database import Base


class Decision(Base):
    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("requester_org", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agreement_id: Mapped[str] = mapped_column(String(36), index=True)
    agreement_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    purpose: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    # Looked up through the unique (requester_org, idempotency_key) index.
    requester_org: Mapped[str] = mapped_column(String(64))
    requester_subject: Mapped[str] = mapped_column(String(200))
    allow: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[Any]] = mapped_column()
    obligations: Mapped[dict[str, Any]] = mapped_column()
    subject_results: Mapped[list[Any]] = mapped_column()
    policy_revision: Mapped[str] = mapped_column(String(80))
    engine: Mapped[str] = mapped_column(String(16))
    input_document: Mapped[dict[str, Any]] = mapped_column()
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    request_fingerprint: Mapped[str] = mapped_column(String(64))  # "" without idempotency_key
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    audit_seq: Mapped[int] = mapped_column(BigInteger)
