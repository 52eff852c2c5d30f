"""Every pooled SQLite connection is set up as the service relies on: write-ahead log,
synchronous=FULL (a commit survives a power loss), foreign keys enforced, a busy timeout,
and checkpoints of at most 500 pages."""

from __future__ import annotations

import pytest

from service.core.database import build_engine

EXPECTED = {
    "journal_mode": "wal",
    "synchronous": 2,
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    "wal_autocheckpoint": 500,
}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_each_connection_gets_the_pragmas(database_url: str) -> None:
    engine = build_engine(database_url, 2)
    try:
        # Two connections of the pool held at once (DB-API level: no transaction begun).
        first, second = engine.raw_connection(), engine.raw_connection()
        try:
            for connection in (first, second):
                cursor = connection.cursor()
                found = {name: cursor.execute(f"PRAGMA {name}").fetchone()[0] for name in EXPECTED}
                cursor.close()
                assert found == EXPECTED
        finally:
            first.close()
            second.close()
    finally:
        engine.dispose()
