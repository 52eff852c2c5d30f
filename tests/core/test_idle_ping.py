"""PostgreSQL connections are checked before use only after they sat idle in the pool; the
pool hands out the connection returned last."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from service.core import database
from service.core.database import build_engine

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = build_engine(database_url, 1)
    yield engine
    engine.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(engine: Engine, pid: int) -> None:
    other = build_engine(engine.url.render_as_string(hide_password=False), 1)
    try:
        with other.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        other.dispose()


def test_an_idle_connection_that_died_is_replaced_unseen(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = backend_pid(engine)
    terminate(engine, dead)
    monkeypatch.setattr(database, "IDLE_PING_SECONDS", 0.0)  # it has been idle long enough
    assert backend_pid(engine) != dead


def test_a_connection_used_moments_ago_is_not_checked_and_fails_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = backend_pid(engine)
    terminate(engine, dead)
    monkeypatch.setattr(database, "IDLE_PING_SECONDS", 3600.0)
    with pytest.raises(OperationalError) as failed:
        backend_pid(engine)
    assert failed.value.connection_invalidated
    assert backend_pid(engine) != dead  # the pool reconnects for the next caller


def test_the_most_recently_returned_connection_is_handed_out_first(database_url: str) -> None:
    """Last in, first out: under light load the same few server processes, with their
    caches warm, serve every request, instead of the pool cycling through all of them."""
    engine = build_engine(database_url, 3)
    try:
        held = [engine.connect() for _ in range(3)]
        pids = [int(c.execute(text("SELECT pg_backend_pid()")).scalar_one()) for c in held]
        for connection in held:  # returned in order: pids[-1] is the last one back
            connection.close()
        assert backend_pid(engine) == pids[-1]
        assert backend_pid(engine) == pids[-1]
    finally:
        engine.dispose()
