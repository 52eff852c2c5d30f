"""Organisations, purposes, data categories and fields."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from service.core.database import Base


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sector: Mapped[str] = mapped_column(String(32))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Purpose(Base):
    """A use case; codes are dotted paths and a child's code extends its parent's."""

    __tablename__ = "purposes"

    code: Mapped[str] = mapped_column(String(128), primary_key=True)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("purposes.code"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")


class DataCategory(Base):
    __tablename__ = "data_categories"

    code: Mapped[str] = mapped_column(String(128), primary_key=True)
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("data_categories.code"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)


class DataField(Base):
    __tablename__ = "data_fields"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    category_code: Mapped[str] = mapped_column(ForeignKey("data_categories.code"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
