"""PostgreSQL going away mid-service: 503s, not-ready, no allow; recovery on its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

from service.core.settings import Settings
from tests.support.api import Api
from tests.support.clock import MutableClock
from tests.support.databases import BACKENDS


@contextmanager
def database_refusing_connections(settings: Settings) -> Iterator[None]:
    database = settings.database_url.rsplit("/", 1)[1]
    admin = create_engine(
        settings.database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d"),
                {"d": database},
            )
        yield
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        admin.dispose()


# An outage of an embedded SQLite file is not a thing; the PostgreSQL server is.
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"])
def test_outage_gives_503_and_recovery_is_automatic(
    world: Api, clock: MutableClock, settings: Settings
) -> None:
    agreement_id = world.active(clock.now())
    world.consent(clock.now(), "subject-1")
    body = {
        "agreement_id": agreement_id,
        "purpose": "research.public_health",
        "fields": ["postcode"],
        "subjects": ["subject-1"],
    }
    assert world.ok(world.post("/v1/decisions", "partner", "uni-lab", json=body))["allow"]

    with database_refusing_connections(settings):
        for _ in range(3):
            response = world.post("/v1/decisions", "partner", "uni-lab", json=body)
            assert response.status_code == 503, response.text
            assert "allow" not in response.json()
            assert "postgres" not in response.text.lower()
        ready = world.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "unreachable"

    assert world.client.get("/readyz").status_code == 200
    assert world.ok(world.post("/v1/decisions", "partner", "uni-lab", json=body))["allow"]
