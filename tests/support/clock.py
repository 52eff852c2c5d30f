"""A clock tests can move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class MutableClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC).replace(microsecond=0)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta
