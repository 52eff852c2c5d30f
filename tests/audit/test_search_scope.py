"""A steward sees an agreement's events only for the versions its organisation is party to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from service.agreements.models import Agreement, AgreementParty, AgreementVersion
from service.audit import search, signer, tree
from service.core.clock import iso
from service.core.identity import Principal, Role
from service.registry.models import Organisation
from tests.audit.conftest import LogRuntime, append_events, tx
from tests.support.clock import MutableClock

pytestmark = pytest.mark.storage


def version_row(agreement_id: str, number: int) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "id": f"{agreement_id}-v{number}", "agreement_id": agreement_id, "version": number,
        "status": "active", "title": "t", "description": "", "legal_basis": "consent",
        "consent_required": True, "retention_days": 30, "valid_from": now,
        "valid_until": now + timedelta(days=1), "minimisation_mode": "strict", "min_cohort": 1,
        "pseudonymisation_required": True, "jurisdiction": "UK", "purposes": [],
        "created_by": "s", "created_at": now, "updated_at": now,
    }  # fmt: skip


@pytest.fixture
def amended(log_runtime: LogRuntime) -> LogRuntime:
    """Agreement `agr-1`: version 1 between a and b, version 2 between a and c."""
    now = datetime.now(UTC)
    with tx(log_runtime.sessions) as session:
        session.execute(
            insert(Organisation),
            [{"id": o, "name": o, "sector": "health", "enabled": True, "created_at": now}
             for o in ("a", "b", "c", "d")],
        )  # fmt: skip
        session.execute(
            insert(Agreement).values(
                id="agr-1", created_by_org="a", created_at=now, latest_version=2
            )
        )
        session.execute(
            insert(AgreementVersion), [version_row("agr-1", 1), version_row("agr-1", 2)]
        )
        session.execute(
            insert(AgreementParty),
            [
                {"version_id": "agr-1-v1", "organisation_id": "a", "role": "provider"},
                {"version_id": "agr-1-v1", "organisation_id": "b", "role": "recipient"},
                {"version_id": "agr-1-v2", "organisation_id": "a", "role": "provider"},
                {"version_id": "agr-1-v2", "organisation_id": "c", "role": "recipient"},
            ],
        )
    append_events(log_runtime, 2, agreement_version=1)  # seq 0, 1
    append_events(log_runtime, 2, agreement_version=2)  # seq 2, 3
    append_events(log_runtime, 1, agreement_version=None)  # seq 4: names no version
    append_events(log_runtime, 1, agreement_id="agr-other")  # seq 5
    return log_runtime


@pytest.mark.parametrize(
    ("org", "expected"),
    [("a", [0, 1, 2, 3, 4]), ("b", [0, 1, 4]), ("c", [2, 3, 4]), ("d", [])],
)
def test_steward_scope_follows_the_versions_parties(
    amended: LogRuntime, org: str, expected: list[int]
) -> None:
    steward = Principal(f"steward@{org}", Role.STEWARD, org)
    with tx(amended.read_sessions) as session:
        events, _ = search.find_events(session, steward, search.EventFilter(), after=None, limit=50)
    assert [e.seq for e in events] == expected


def test_time_windows_use_the_block_index_and_miss_nothing(
    log_runtime: LogRuntime, clock: MutableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tree, "MIN_LEVEL", 2)  # blocks of 4 events
    start = clock.now()
    # Times mostly follow seq, with stragglers: a clock that jumps back now and then.
    for step in [0, 1, 2, 3, 1, 4, 5, 6, 2, 7, 8, 9, 10, 3, 11, 12]:
        clock.advance(start + timedelta(hours=step) - clock.now())
        append_events(log_runtime, 2)
    signer.sign_tree_head(log_runtime)
    append_events(log_runtime, 3)  # an unindexed tail, at the last time
    auditor = Principal("a", Role.AUDITOR, "council")
    with tx(log_runtime.read_sessions) as session:
        everything, _ = search.find_events(
            session, auditor, search.EventFilter(), after=None, limit=500
        )
        for lo, hi in [(0, 1), (2, 3), (3, 5), (9, 13), (12, 13), (20, 30), (0, 30)]:
            window = search.EventFilter(
                since=start + timedelta(hours=lo), until=start + timedelta(hours=hi)
            )
            since, until = iso(start + timedelta(hours=lo)), iso(start + timedelta(hours=hi))
            expected = [e.seq for e in everything if since <= e.occurred_at < until]
            for descending in (False, True):
                found, _ = search.find_events(
                    session, auditor, window, after=None, limit=500, descending=descending
                )
                wanted = expected[::-1] if descending else expected
                assert [e.seq for e in found] == wanted, (lo, hi, descending)
            paged, cursor = search.find_events(session, auditor, window, after=None, limit=2)
            while cursor is not None:
                more, cursor = search.find_events(session, auditor, window, after=cursor, limit=2)
                paged += more
            assert [e.seq for e in paged] == expected
            counts = search.count_events(session, auditor, window, search.GroupBy.OUTCOME)
            assert sum(n for _, n in counts) == len(expected)
