"""The consent lookup a decision makes: right rows, and an index the planner can use."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from service.consents.models import Consent
from service.consents.service import _CONSENTS_SQLITE, for_decision
from service.core.database import build_engine
from service.registry.models import Organisation

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = build_engine(database_url, 2)
    yield engine
    engine.dispose()


def _consent(n: int, subject: str, controller: str, **overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": f"consent-{n}",
        "subject_pseudonym": subject,
        "controller_org": controller,
        "status": "given",
        "purposes": ["research"],
        "categories": ["health"],
        "valid_from": WHEN,
        "valid_until": None,
        "subject_is_minor": False,
        "evidence": {"method": "form"},
        "guardian": None,
        "revision": 1,
        "created_at": WHEN,
        "updated_at": WHEN,
    }
    row.update(overrides)
    return row


def test_finds_the_subjects_consents_held_by_the_controllers(engine: Engine) -> None:
    rows = [
        _consent(1, "ps-a", "org-1"),
        _consent(2, "ps-a", "org-2", status="withdrawn", guardian={"relationship": "parent"}),
        _consent(3, "ps-a", "org-other"),  # another controller's: not for this agreement
        _consent(4, "ps-b", "org-1", valid_until=datetime(2027, 1, 1, tzinfo=UTC)),
        _consent(5, "ps-c", "org-1"),  # not asked for
    ]
    orgs = ("org-1", "org-2", "org-other")
    with engine.begin() as connection:
        connection.execute(
            insert(Organisation),
            [{"id": o, "name": o, "sector": "health", "created_at": WHEN} for o in orgs],
        )
        connection.execute(insert(Consent), rows)
    with engine.connect() as connection:
        found = for_decision(connection, ["ps-b", "ps-a", "ps-a", "ps-z"], ["org-1", "org-2"])
    assert sorted(found) == ["ps-a", "ps-b"]
    assert sorted(c["id"] for c in found["ps-a"]) == ["consent-1", "consent-2"]
    withdrawn = next(c for c in found["ps-a"] if c["id"] == "consent-2")
    assert withdrawn["status"] == "withdrawn"
    assert withdrawn["guardian"] is True
    assert withdrawn["purposes"] == ["research"]
    (only_b,) = found["ps-b"]
    assert only_b["valid_from_ns"] == int(WHEN.timestamp()) * 10**9
    assert only_b["valid_until_ns"] == int(datetime(2027, 1, 1, tzinfo=UTC).timestamp()) * 10**9


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_sqlite_looks_consents_up_by_the_pseudonym_index(engine: Engine) -> None:
    """The planner cannot tell how many pseudonyms json_each yields: the lookup must still
    search the pseudonym index, never scan a controller's consents (a regression made a
    one-subject decision read every consent of its provider)."""
    compiled = _CONSENTS_SQLITE.compile(engine)
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + str(compiled), ('["ps-a"]',)
        ).all()
    details = " | ".join(str(row[-1]) for row in plan)
    assert "USING INDEX ix_consents_subject_pseudonym" in details, details
    assert "SCAN consents" not in details, details


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_refuses_a_pseudonym_it_could_not_split(engine: Engine) -> None:
    """PostgreSQL gets the pseudonyms comma-joined; pseudonyms are "ps_" and hex, and
    anything else with a comma is refused rather than looked up as two subjects."""
    with engine.connect() as connection, pytest.raises(ValueError, match="comma"):
        for_decision(connection, ["ps-a,ps-b"], ["org-1"])
