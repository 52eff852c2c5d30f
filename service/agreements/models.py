"""Agreements and their versions; a version is what parties approve and decisions cite."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.core.database import Base


class Agreement(Base):
    __tablename__ = "agreements"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_by_org: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    latest_version: Mapped[int] = mapped_column(Integer, default=1)
    # The version decisions are made under: active or suspended. None until one activates.
    in_force_version: Mapped[int | None] = mapped_column(Integer, nullable=True)

    versions: Mapped[list[AgreementVersion]] = relationship(
        back_populates="agreement", lazy="raise", order_by="AgreementVersion.version"
    )


class AgreementVersion(Base):
    __tablename__ = "agreement_versions"
    __table_args__ = (UniqueConstraint("agreement_id", "version"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24), index=True)
    status_reason: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    # The organisation whose steward suspended the version (only it may resume it).
    suspended_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Parties of the version in force that this amendment drops: set at submission; they
    # approve the amendment too (joint governance), though they are not its parties.
    departing: Mapped[list[str]] = mapped_column(default=list)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(4000), default="")
    legal_basis: Mapped[str] = mapped_column(String(32))
    consent_required: Mapped[bool] = mapped_column(Boolean)
    retention_days: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    minimisation_mode: Mapped[str] = mapped_column(String(8))
    min_cohort: Mapped[int] = mapped_column(Integer)
    pseudonymisation_required: Mapped[bool] = mapped_column(Boolean)
    jurisdiction: Mapped[str] = mapped_column(String(32))
    # [{"purpose": "research", "fields": ["diagnosis_code", ...]}, ...]
    purposes: Mapped[list[Any]] = mapped_column()
    review_required: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    agreement: Mapped[Agreement] = relationship(back_populates="versions", lazy="raise")
    parties: Mapped[list[AgreementParty]] = relationship(
        lazy="selectin", cascade="all, delete-orphan"
    )
    approvals: Mapped[list[AgreementApproval]] = relationship(
        lazy="selectin", order_by="AgreementApproval.decided_at"
    )


class AgreementParty(Base):
    __tablename__ = "agreement_parties"

    version_id: Mapped[str] = mapped_column(ForeignKey("agreement_versions.id"), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        ForeignKey("organisations.id"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16), primary_key=True)  # provider | recipient


class AgreementApproval(Base):
    __tablename__ = "agreement_approvals"
    __table_args__ = (UniqueConstraint("version_id", "organisation_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("agreement_versions.id"), index=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    decision: Mapped[str] = mapped_column(String(16))  # approved | rejected
    comment: Mapped[str] = mapped_column(String(2000), default="")
    actor_subject: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
