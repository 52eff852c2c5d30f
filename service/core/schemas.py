"""Base request/response models."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict

from service.core.clock import as_utc


def json_integer(value: Any) -> Any:
    """JSON integers only: 30 and 30.0 (JSON Schema's integer), never "30" or true."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer")
    return value


JsonInt = Annotated[int, BeforeValidator(json_integer)]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: Any) -> Any:
    """RFC 3339 date-times only (pydantic alone would also take Unix timestamps)."""
    if isinstance(value, str) and not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset")
    return value


Rfc3339 = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]

# Responses always carry aware UTC times (SQLite hands back naive ones).
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]


class RequestModel(BaseModel):
    """Request bodies: unknown fields are refused, server-owned fields cannot be set."""

    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
