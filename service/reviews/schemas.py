"""Ethics review request and response models."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from service.core.schemas import Moment, RequestModel, ResponseModel, UtcDateTime


class ReviewOutcome(StrEnum):
    APPROVED = "approved"
    APPROVED_WITH_CONDITIONS = "approved_with_conditions"
    REJECTED = "rejected"


class ReviewCreate(RequestModel):
    outcome: ReviewOutcome
    conditions: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=500)]], Field(max_length=50)
    ] = Field(default_factory=list)
    reference: str = Field(min_length=1, max_length=200, description="the committee's reference")
    valid_from: Moment
    valid_until: Moment

    @model_validator(mode="after")
    def _coherent(self) -> ReviewCreate:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        if self.outcome is ReviewOutcome.APPROVED_WITH_CONDITIONS and not self.conditions:
            raise ValueError("approved_with_conditions needs at least one condition")
        return self


class ReviewRead(ResponseModel):
    id: str
    agreement_id: str
    version: int
    outcome: ReviewOutcome
    conditions: list[str]
    reference: str
    valid_from: UtcDateTime
    valid_until: UtcDateTime
    reviewer_subject: str
    reviewer_org: str
    recorded_at: UtcDateTime
