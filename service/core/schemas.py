"""Base request/response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from service.core.clock import as_utc

# Responses always carry aware UTC times (SQLite hands back naive ones).
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]


class RequestModel(BaseModel):
    """Request bodies: unknown fields are refused, server-owned fields cannot be set."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
