"""Refuse to serve on a database configured to lose acknowledged commits."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine


class UnsafeDurability(RuntimeError):
    """The database could lose an event after Accord acknowledged it."""


def check_durability(engine: Engine) -> None:
    problems: list[str] = []
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar()
            if str(mode).lower() != "wal" and not str(engine.url).endswith(":memory:"):
                problems.append(f"SQLite journal_mode is {mode}, not wal")
            if synchronous is None or int(synchronous) < 2:
                problems.append(f"SQLite synchronous is {synchronous}, not FULL (2)")
        elif engine.dialect.name == "postgresql":
            commit = connection.execute(text("SHOW synchronous_commit")).scalar()
            fsync = connection.execute(text("SHOW fsync")).scalar()
            if commit == "off":
                problems.append("PostgreSQL synchronous_commit is off")
            if fsync != "on":
                problems.append(f"PostgreSQL fsync is {fsync}")
    if problems:
        raise UnsafeDurability(
            "refusing to start: acknowledged audit events could be lost: " + "; ".join(problems)
        )
