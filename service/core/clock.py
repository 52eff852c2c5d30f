"""Time as a dependency, so tests and replays control `now`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)  # SQLite hands back naive UTC times


def to_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, the only time form policies see."""
    delta = moment - (_EPOCH_NAIVE if moment.tzinfo is None else _EPOCH)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def as_utc(moment: datetime) -> datetime:
    """Aware UTC datetime (SQLite returns naive values)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds: sorts as text and round-trips exactly. (isoformat,
    not strftime, whose %Y does not zero-pad years below 1000 on glibc.)"""
    return as_utc(moment).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
