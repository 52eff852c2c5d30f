"""Registry request and response models."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StrictBool

from service.core.schemas import RequestModel, ResponseModel, UtcDateTime

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{1,62}[a-z0-9]$", max_length=64)]
DottedCode = Annotated[
    str, Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$", min_length=2, max_length=128)
]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,127}$")]


class Sector(StrEnum):
    GOVERNMENT = "government"
    HEALTH = "health"
    EDUCATION = "education"
    INDUSTRY = "industry"
    CIVIL_SOCIETY = "civil_society"
    ACADEMIA = "academia"
    COMMUNITY = "community"
    OPERATOR = "operator"  # the organisation running this Accord deployment


class OrganisationCreate(RequestModel):
    id: Slug = Field(description="stable identifier, also the `org` claim of its tokens")
    name: str = Field(min_length=1, max_length=200)
    sector: Sector


class OrganisationUpdate(RequestModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    enabled: StrictBool | None = None


class OrganisationRead(ResponseModel):
    id: str
    name: str
    sector: Sector
    enabled: bool
    created_at: UtcDateTime


class PurposeCreate(RequestModel):
    code: DottedCode = Field(description="dotted path; its parent must exist")
    label: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=1000)


class PurposeRead(ResponseModel):
    code: str
    parent_code: str | None
    label: str
    description: str


class CategoryCreate(RequestModel):
    code: DottedCode
    label: str = Field(min_length=1, max_length=200)
    sensitive: StrictBool = Field(False, description="special-category data, or data about minors")


class CategoryRead(ResponseModel):
    code: str
    parent_code: str | None
    label: str
    sensitive: bool


class FieldCreate(RequestModel):
    name: FieldName
    category: DottedCode
    label: str = Field(min_length=1, max_length=200)
    sensitive: StrictBool = False


class FieldRead(ResponseModel):
    name: str
    category: str
    label: str
    sensitive: bool = Field(description="sensitive itself or through its category")
