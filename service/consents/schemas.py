"""Consent request and response models. Raw subject ids come in, never go out."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StrictBool, model_validator

from service.core.schemas import Moment, RequestModel, ResponseModel, UtcDateTime
from service.registry.schemas import DottedCode

SubjectId = Annotated[str, Field(min_length=1, max_length=200)]


class ConsentStatus(StrEnum):
    GIVEN = "given"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    REFUSED = "refused"


class CollectionMethod(StrEnum):
    WEB_FORM = "web_form"
    PAPER_FORM = "paper_form"
    VERBAL_RECORDED = "verbal_recorded"
    MOBILE_APP = "mobile_app"
    OTHER = "other"


class Evidence(RequestModel):
    method: CollectionMethod
    notice_version: str = Field(min_length=1, max_length=64, description="privacy notice shown")
    collected_at: Moment
    reference: str = Field("", max_length=200, description="the partner's own record reference")


class Guardian(RequestModel):
    guardian_id: SubjectId = Field(description="pseudonymised on receipt, never stored")
    relationship: str = Field(min_length=1, max_length=64)


class ConsentCreate(RequestModel):
    subject_id: SubjectId = Field(description="pseudonymised on receipt, never stored")
    status: ConsentStatus = Field(ConsentStatus.GIVEN, description="given or refused")
    purposes: Annotated[list[DottedCode], Field(min_length=1, max_length=50)]
    categories: Annotated[list[DottedCode], Field(min_length=1, max_length=100)]
    valid_from: Moment | None = Field(None, description="defaults to now")
    valid_until: Moment | None = None
    evidence: Evidence
    subject_is_minor: StrictBool = False
    guardian: Guardian | None = None

    @model_validator(mode="after")
    def _coherent(self) -> ConsentCreate:
        if self.status not in (ConsentStatus.GIVEN, ConsentStatus.REFUSED):
            raise ValueError("a new consent is either given or refused")
        if self.subject_is_minor and self.status is ConsentStatus.GIVEN and self.guardian is None:
            raise ValueError("a minor's consent needs the guardian who gave it")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class Withdrawal(RequestModel):
    reason: str = Field("", max_length=1000)


class Renewal(RequestModel):
    valid_until: Moment | None
    evidence: Evidence


class HistoryQuery(RequestModel):
    subject_id: SubjectId


class ConsentRead(ResponseModel):
    id: str
    subject_pseudonym: str
    controller_org: str
    status: ConsentStatus
    purposes: list[str]
    categories: list[str]
    valid_from: UtcDateTime
    valid_until: UtcDateTime | None
    evidence: dict[str, Any]
    subject_is_minor: bool
    guardian: dict[str, Any] | None
    revision: int
    created_at: UtcDateTime
    updated_at: UtcDateTime


class ConsentEventRead(ResponseModel):
    revision: int
    event_type: str
    state: dict[str, Any]
    actor_subject: str
    actor_org: str
    occurred_at: UtcDateTime


class ConsentHistory(ResponseModel):
    subject_pseudonym: str
    consents: list[ConsentRead]
    events: dict[str, list[ConsentEventRead]] = Field(description="consent id -> its events")
