"""Consents, held only under the subject's keyed pseudonym.

`consents` is the current state (a projection); `consent_events` is the append-only history
it is derived from. The database refuses UPDATE and DELETE on the history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.core.database import Base


class Consent(Base):
    __tablename__ = "consents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_pseudonym: Mapped[str] = mapped_column(String(80), index=True)
    controller_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    purposes: Mapped[list[str]] = mapped_column()
    categories: Mapped[list[str]] = mapped_column()
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    evidence: Mapped[dict[str, Any]] = mapped_column()
    subject_is_minor: Mapped[bool] = mapped_column(Boolean, default=False)
    guardian: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsentEvent(Base):
    __tablename__ = "consent_events"
    __table_args__ = (UniqueConstraint("consent_id", "revision"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    consent_id: Mapped[str] = mapped_column(ForeignKey("consents.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(16))
    # The consent's full state after this event.
    state: Mapped[dict[str, Any]] = mapped_column()
    actor_subject: Mapped[str] = mapped_column(String(200))
    actor_org: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
