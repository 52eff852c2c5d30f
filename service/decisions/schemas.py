"""Decision request and response models."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from service.core.schemas import JsonInt, RequestModel, ResponseModel, UtcDateTime
from service.registry.schemas import DottedCode, FieldName

SubjectId = Annotated[str, Field(min_length=1, max_length=200)]
# Agreement ids are UUIDs. Anything else is refused here, before it reaches a read that
# decides a whole group of requests (PostgreSQL rejects, e.g., a NUL in any text).
AgreementRef = Annotated[
    str,
    Field(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        description="the agreement's id (a UUID)",
    ),
]


class Aggregate(RequestModel):
    cohort_size: JsonInt = Field(ge=0, le=1_000_000_000, description="subjects behind the release")


class DecisionRequest(RequestModel):
    agreement_id: AgreementRef
    purpose: DottedCode
    fields: Annotated[list[FieldName], Field(min_length=1, max_length=200)]
    subjects: Annotated[list[SubjectId], Field(min_length=1, max_length=100_000)] | None = Field(
        None,
        description=(
            "raw subject ids (pseudonymised on receipt); one result each. At most "
            "ACCORD_MAX_BATCH_SUBJECTS (10,000 unless configured; never more than 100,000)"
        ),
    )
    aggregate: Aggregate | None = Field(None, description="an aggregate release instead")

    @model_validator(mode="after")
    def _one_kind(self) -> DecisionRequest:
        if (self.subjects is None) == (self.aggregate is None):
            raise ValueError("give exactly one of `subjects` or `aggregate`")
        if len(set(self.fields)) != len(self.fields):
            raise ValueError("fields must not repeat")
        return self


class Reason(ResponseModel):
    code: str = Field(description="stable machine-readable code (see policies/README.md)")
    message: str


class Obligations(ResponseModel):
    permitted_fields: list[str]
    dropped_fields: list[str] = Field(description="requested but removed by minimisation")
    pseudonymise: bool
    retention_days: int | None
    min_cohort: int | None
    ethics_conditions: list[str]


class SubjectResult(ResponseModel):
    index: int = Field(description="position of the subject in the request")
    subject: str = Field(description="the subject's pseudonym")
    allow: bool
    reasons: list[Reason]


class DecisionRead(ResponseModel):
    decision_id: str
    allow: bool
    reasons: list[Reason]
    obligations: Obligations
    subjects: list[SubjectResult]
    agreement_id: str
    agreement_version: int | None
    purpose: str
    policy_revision: str
    engine: str
    decided_at: UtcDateTime
    audit_seq: int = Field(description="leaf index of the decision's audit event")


class DecisionInput(ResponseModel):
    decision_id: str
    input: dict[str, Any] = Field(description="the exact policy input (pseudonyms only)")
