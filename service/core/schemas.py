"""Base request/response models."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    WithJsonSchema,
)

from service.core.clock import as_utc


def json_integer(value: Any) -> Any:
    """JSON integers only: 30 and 30.0 (JSON Schema's integer), never "30" or true."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer")
    return value


JsonInt = Annotated[int, BeforeValidator(json_integer)]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _rfc3339(value: Any) -> Any:
    """RFC 3339 date-times only (pydantic alone would also take Unix timestamps, numbers or
    strings, and a space for the T). A datetime is one the service built itself."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset")
    return value


# The times a request may carry: years 1970 to 2199 as written (whatever the offset, in UTC
# that stays within what every store and the policy input, int64 nanoseconds up to 2262,
# can hold; converting year 1 or 9999 with an offset overflowed). The documents say so
# with a pattern.
_YEARS = "^(19[7-9][0-9]|2[01][0-9][0-9])-"


def _in_range(value: datetime) -> datetime:
    """The moment in UTC, if written with a year from 1970 to 2199."""
    if not 1970 <= value.year <= 2199:
        raise ValueError("the year must be from 1970 to 2199")
    return value.astimezone(UTC)


# A time in a request (body or query): RFC 3339 with an offset, in range, handed on in UTC.
Moment = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339),
    AfterValidator(_in_range),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": _YEARS}),
]

# Responses always carry aware UTC times (SQLite hands back naive ones).
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]


class RequestModel(BaseModel):
    """Request bodies: unknown fields are refused, server-owned fields cannot be set."""

    model_config = ConfigDict(extra="forbid")


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)
