"""insert_rows stores rows exactly as SQLAlchemy's INSERT does (COPY on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from service.core.database import build_engine, insert_rows

METADATA = MetaData()


def _table(name: str) -> Table:
    return Table(
        name,
        METADATA,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("label", String(40), unique=True),
        Column("flag", Boolean),
        Column("at", DateTime(timezone=True)),
        Column("digest", LargeBinary(32)),
        Column("big", BigInteger, nullable=True),
        Column("doc", JSON),
        Column("maybe", JSON, nullable=True),
        Column("strict_null", JSON(none_as_null=True), nullable=True),
    )


VIA_COPY, VIA_INSERT = _table("probe_copy"), _table("probe_insert")
WITH_DEFAULT = Table(
    "probe_default",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("note", String(10), default="n/a"),
)

ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "label": "plain",
        "flag": True,
        "at": datetime(2026, 11, 27, 1, 2, 3, 456789, tzinfo=UTC),
        "digest": bytes(range(32)),
        "big": 2**53 - 1,
        "doc": {"b": [1, "two", None, False], "a": {"nested": 'ünïcode \\ " \t'}},
        "maybe": None,
        "strict_null": None,
    },
    {
        "id": 2,
        "label": "tab\tand\nnewline \\N",  # COPY's own escapes must not leak through
        "flag": False,
        "at": datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        "digest": b"\x00\\\n\t" * 8,
        "big": None,
        "doc": [],
        "maybe": {"k": "v"},
        "strict_null": ["x"],
    },
]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = build_engine(database_url, 2)
    METADATA.create_all(engine)
    yield engine
    engine.dispose()


def stored(engine: Engine, table: Table) -> list[tuple[Any, ...]]:
    """Every column as read back, plus whether each JSON column is SQL NULL."""
    nulls = [
        table.c[name].is_(None).label(f"{name}_is_null") for name in ("doc", "maybe", "strict_null")
    ]
    with engine.connect() as connection:
        return [
            tuple(row) for row in connection.execute(select(table, *nulls).order_by(table.c.id))
        ]


def test_rows_are_stored_as_an_insert_stores_them(engine: Engine) -> None:
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with engine.begin() as connection:
        insert_rows(connection, VIA_COPY, ROWS)
    with engine.begin() as connection:
        connection.execute(insert(VIA_INSERT), ROWS)
    assert stored(engine, VIA_COPY) == stored(engine, VIA_INSERT)
    inserts = [s for s in statements if s.startswith("INSERT INTO probe_copy")]
    # PostgreSQL streams the rows with COPY: no INSERT passes through the engine; SQLite
    # gets one executemany.
    assert len(inserts) == (0 if engine.dialect.name == "postgresql" else 1)


def test_no_rows_is_nothing(engine: Engine) -> None:
    with engine.begin() as connection:
        insert_rows(connection, VIA_COPY, [])
    assert stored(engine, VIA_COPY) == []


def test_a_duplicate_key_is_an_integrity_error_and_nothing_is_stored(engine: Engine) -> None:
    twice = [ROWS[0], {**ROWS[1], "label": ROWS[0]["label"]}]
    with pytest.raises(IntegrityError), engine.begin() as connection:
        insert_rows(connection, VIA_COPY, twice)
    assert stored(engine, VIA_COPY) == []
    with engine.begin() as connection:  # the connection is usable again
        insert_rows(connection, VIA_COPY, ROWS)
    assert [row[0] for row in stored(engine, VIA_COPY)] == [1, 2]


def test_a_column_with_a_python_default_must_be_given(engine: Engine) -> None:
    with engine.begin() as connection:
        insert_rows(connection, WITH_DEFAULT, [{"id": 1, "note": "given"}])
        with pytest.raises(ValueError, match=r"probe_default\.note"):
            insert_rows(connection, WITH_DEFAULT, [{"id": 2}])


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_lost_connection_is_invalidated(engine: Engine) -> None:
    with engine.connect() as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(OperationalError) as failed:
            insert_rows(connection, VIA_COPY, ROWS)
    assert failed.value.connection_invalidated
    with engine.connect() as connection:  # the pool hands out a live connection next
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
