"""An ethics review recorded for one agreement version."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from service.core.database import Base


class EthicsReview(Base):
    __tablename__ = "ethics_reviews"
    __table_args__ = (UniqueConstraint("version_id", "ordinal"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    version_id: Mapped[str] = mapped_column(ForeignKey("agreement_versions.id"), index=True)
    # 1, 2, … per version: the highest is the review in force.
    ordinal: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(32))
    conditions: Mapped[list[str]] = mapped_column()
    reference: Mapped[str] = mapped_column(String(200))
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reviewer_subject: Mapped[str] = mapped_column(String(200))
    reviewer_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
