"""Agreement request and response models."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BeforeValidator, Field, StrictBool, model_validator

from service.core.schemas import (
    JsonInt,
    Moment,
    RequestModel,
    ResponseModel,
    UtcDateTime,
    json_integer,
)
from service.registry.schemas import DottedCode, FieldName, Slug


class AgreementStatus(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"
    EXPIRED = "expired"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


class LegalBasis(StrEnum):
    CONSENT = "consent"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"
    LEGITIMATE_INTERESTS = "legitimate_interests"


class MinimisationMode(StrEnum):
    STRICT = "strict"
    TRIM = "trim"


class Minimisation(RequestModel):
    mode: MinimisationMode = Field(
        MinimisationMode.STRICT,
        description="strict: any unpermitted field denies; trim: drop it and report it",
    )
    min_cohort: JsonInt = Field(10, ge=1, le=1_000_000, description="smallest aggregate release")


class PurposeFields(RequestModel):
    purpose: DottedCode
    fields: Annotated[list[FieldName], Field(min_length=1, max_length=200)]


Orgs = Annotated[list[Slug], Field(min_length=1, max_length=50)]


class AgreementTerms(RequestModel):
    """The terms every version carries."""

    title: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=4000)
    providers: Orgs
    recipients: Orgs
    legal_basis: LegalBasis
    consent_required: StrictBool | None = Field(
        None, description="defaults to true when the legal basis is consent"
    )
    retention_days: JsonInt = Field(ge=1, le=36_500)
    valid_from: Moment
    valid_until: Moment
    minimisation: Minimisation = Field(default_factory=Minimisation)
    pseudonymisation_required: StrictBool = True
    jurisdiction: str = Field(min_length=2, max_length=32)
    purposes: Annotated[list[PurposeFields], Field(min_length=1, max_length=50)]

    @model_validator(mode="after")
    def _coherent(self) -> AgreementTerms:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.legal_basis is LegalBasis.CONSENT and self.consent_required is False:
            raise ValueError("an agreement on the basis of consent requires consent")
        if self.consent_required is None:
            self.consent_required = self.legal_basis is LegalBasis.CONSENT
        if len({p.purpose for p in self.purposes}) != len(self.purposes):
            raise ValueError("each purpose may appear only once")
        return self


class AgreementCreate(AgreementTerms):
    pass


class AgreementAmend(RequestModel):
    """Changes carried into the new version; omitted terms are copied from the latest."""

    title: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=4000)
    providers: Orgs | None = None
    recipients: Orgs | None = None
    legal_basis: LegalBasis | None = None
    consent_required: StrictBool | None = None
    retention_days: Annotated[int, Field(ge=1, le=36_500), BeforeValidator(json_integer)] | None = (
        None
    )
    valid_from: Moment | None = None
    valid_until: Moment | None = None
    minimisation: Minimisation | None = None
    pseudonymisation_required: StrictBool | None = None
    jurisdiction: str | None = Field(None, min_length=2, max_length=32)
    purposes: Annotated[list[PurposeFields], Field(min_length=1, max_length=50)] | None = None


class Comment(RequestModel):
    comment: str = Field("", max_length=2000)


class RequiredComment(RequestModel):
    comment: str = Field(min_length=1, max_length=2000)


class Reason(RequestModel):
    reason: str = Field(min_length=1, max_length=1000)


class ApprovalRead(ResponseModel):
    organisation_id: str
    decision: str
    comment: str
    actor_subject: str
    decided_at: UtcDateTime


class VersionRead(ResponseModel):
    agreement_id: str
    version: int
    status: AgreementStatus
    status_reason: str | None
    suspended_by: str | None = Field(
        description="while suspended: the organisation that suspended it (only it may resume)"
    )
    title: str
    description: str
    providers: list[str]
    recipients: list[str]
    legal_basis: LegalBasis
    consent_required: bool
    retention_days: int
    valid_from: UtcDateTime
    valid_until: UtcDateTime
    minimisation: Minimisation
    pseudonymisation_required: bool
    jurisdiction: str
    purposes: list[PurposeFields]
    review_required: bool | None = Field(
        description="set at submission: the version covers sensitive data"
    )
    approvals: list[ApprovalRead]
    awaiting_approval_from: list[str]
    created_by: str
    created_at: UtcDateTime
    submitted_at: UtcDateTime | None
    approved_at: UtcDateTime | None
    activated_at: UtcDateTime | None
    ended_at: UtcDateTime | None


class VersionSummary(ResponseModel):
    version: int
    status: AgreementStatus


class AgreementRead(ResponseModel):
    id: str
    created_by_org: str
    created_at: UtcDateTime
    in_force_version: int | None
    latest_version: int
    versions: list[VersionSummary]
    latest: VersionRead


class AgreementPage(ResponseModel):
    items: list[AgreementRead]
    next_cursor: str | None
