"""Times handed to policies: integer nanoseconds, the same for naive-UTC and aware values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from service.core.clock import iso, to_ns

moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@given(moments, st.integers(min_value=-12 * 60, max_value=14 * 60))
def test_to_ns_is_exact_and_zone_independent(moment: datetime, offset_minutes: int) -> None:
    expected = int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1000
    assert to_ns(moment) == expected
    assert to_ns(moment.replace(tzinfo=None)) == expected
    shifted = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert to_ns(shifted) == expected


@given(moments)
def test_iso_sorts_like_time(moment: datetime) -> None:
    later = moment + timedelta(microseconds=1)
    assert iso(moment) < iso(later)
    assert iso(moment).endswith("Z")


@given(st.datetimes(timezones=st.just(UTC)))
def test_iso_is_rfc_3339_for_every_year(moment: datetime) -> None:
    """Four-digit years, zero-padded below 1000 (strftime's %Y is not, on glibc), and the
    exact instant back."""
    text = iso(moment)
    assert len(text) == len("2026-11-27T12:00:00.000000Z")
    assert text[4] == "-"
    assert text.endswith("Z")
    assert datetime.fromisoformat(text) == moment
    assert iso(moment.replace(tzinfo=None)) == text  # SQLite's naive UTC
