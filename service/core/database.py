"""Engine, session and the declarative base shared by every domain's models."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from functools import cache
from operator import itemgetter
from typing import Any, ClassVar

import orjson
from sqlalchemy import JSON, Connection, MetaData, Table, create_engine, event, insert
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


READ_ONLY = "accord_read_only"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        list[str]: JSON,
    }


def _configure_sqlite(engine: Engine) -> None:
    """WAL with synchronous=FULL: an acknowledged commit survives a crash or power loss.

    Transactions begin IMMEDIATE so that two writers never deadlock upgrading a read lock;
    pysqlite's own transaction handling is switched off so that SQLAlchemy's BEGIN is the
    one that counts.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        # The commit that takes the WAL past this many pages checkpoints it: 500 instead of
        # SQLite's 1,000 halves the occasional commit that pays for a checkpoint, for a lower
        # p99 (four alternating pairs: 23.4 against 24.3 ms) at 2% of the throughput.
        cursor.execute("PRAGMA wal_autocheckpoint=500")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


# JSON columns are encoded and decoded with orjson: the same JSON, several times faster.
_JSON_CODEC: dict[str, Any] = {"json_serializer": _json_text, "json_deserializer": orjson.loads}


def build_engine(url: str, pool_size: int = 20) -> Engine:
    """An engine whose pool holds `pool_size` connections (twice that under a burst)."""
    if url.startswith("sqlite"):
        in_memory = make_url(url).database in (None, "", ":memory:")
        engine = create_engine(
            url,
            **_JSON_CODEC,
            # One connection per thread for an in-memory database; a pool for a file.
            **({} if in_memory else {"pool_size": pool_size, "max_overflow": pool_size}),
            connect_args={"check_same_thread": False, "timeout": 10},
        )
        _configure_sqlite(engine)
        return engine
    if url.startswith("postgresql"):
        engine = create_engine(
            url,
            **_JSON_CODEC,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=10,
            # Last in, first out: the few connections in use stay warm (their server
            # processes' caches, psycopg's prepared statements); first in, first out cycled
            # the requests through all of them, and PostgreSQL spent 12-20% more CPU per
            # decision (bench/README.md).
            pool_use_lifo=True,
            connect_args={"connect_timeout": 5},
        )
        _ping_when_idle(engine)
        return engine
    return create_engine(url, poolclass=NullPool, **_JSON_CODEC)


IDLE_PING_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use if it has been idle for a while.

    SQLAlchemy's pool_pre_ping checks every checkout, a round trip per request and, on the
    decision path, per decision group. A connection that was in use moments ago is almost
    always alive; the ones that die unnoticed are those left idle (a server restart, a
    firewall's idle timeout). A dead one is discarded and the pool takes another. If the
    server went away within the last IDLE_PING_SECONDS, the statement fails instead: the
    pool is invalidated, the caller gets a 503, and the next request reconnects.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            cursor = dbapi_connection.cursor()
            cursor.execute("SELECT 1")
            cursor.close()
            dbapi_connection.rollback()
        except Exception as exc:
            raise DisconnectionError("idle connection is gone") from exc


def session_factory(engine: Engine, *, read_only: bool = False) -> sessionmaker[Session]:
    """Sessions for writing, or for reading only (on SQLite those do not take the write lock)."""
    bind = engine.execution_options(**{READ_ONLY: True}) if read_only else engine
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


_SQLITE_WRITERS: dict[int, threading.Lock] = {}
_SQLITE_WRITERS_GUARD = threading.Lock()


def _writer_lock(factory: sessionmaker[Session]) -> threading.Lock | None:
    """SQLite admits one writer: queue this process's writers on a lock rather than on
    SQLite's busy handler, which sleeps up to 100 ms between retries. A plain Lock, not an
    RLock: a request's transaction may end on another worker thread than it began on."""
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine) or bind.dialect.name != "sqlite":
        return None
    if bind.get_execution_options().get(READ_ONLY, False):
        return None
    with _SQLITE_WRITERS_GUARD:
        return _SQLITE_WRITERS.setdefault(id(bind.pool), threading.Lock())


def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit when the block succeeds, roll back when it raises."""
    lock = _writer_lock(factory)
    if lock is not None:
        lock.acquire()
    try:
        with factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        if lock is not None:
            lock.release()


def insert_rows(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """`connection.execute(insert(table), rows)`, without the expression layer's per-row work.

    On the decision path that work cost more CPU than the inserts. Here the rows go to the
    driver in one call: COPY on PostgreSQL (psycopg's executemany also binds each row in
    Python), executemany on SQLite (3% more decisions per second than through the
    expression layer, bench/README.md). They are stored as the INSERT would store them:
    each value passes its column type's own bind processor on SQLite; on PostgreSQL the
    JSON columns are encoded as the engine encodes them (None as JSON null unless the type
    says `none_as_null`) and psycopg adapts the rest. The columns are those of the first
    row, and a column left out may not have a Python-side default.
    """
    if not rows:
        return
    columns = tuple(rows[0])
    dialect = connection.dialect
    if dialect.name == "postgresql":
        encoders = _json_columns(table, columns)
        _copy_rows(connection, table, columns, _values(rows, columns, encoders))
    elif dialect.name == "sqlite":
        processed = list(_values(rows, columns, _bind_processors(table, columns, dialect)))
        connection.exec_driver_sql(_qmark_insert(table, columns, dialect), processed)
    else:
        connection.execute(insert(table), rows)


def _values(
    rows: list[dict[str, Any]], columns: tuple[str, ...], processors: tuple[tuple[int, Any], ...]
) -> Iterator[tuple[Any, ...]]:
    """Each row's values in `columns` order, those at the processors' positions processed."""
    values_of = itemgetter(*columns)
    for row in rows:
        found = list(values_of(row)) if len(columns) > 1 else [row[columns[0]]]
        for at, process in processors:
            found[at] = process(found[at])
        yield tuple(found)


def _json_or_null(value: Any) -> str | None:
    return None if value is None else _json_text(value)


def _check_defaults(table: Table, columns: tuple[str, ...]) -> None:
    for column in table.columns:
        if column.name not in columns and column.default is not None:
            raise ValueError(f"{table.name}.{column.name} has a Python-side default; give it")


@cache
def _json_columns(table: Table, columns: tuple[str, ...]) -> tuple[tuple[int, Any], ...]:
    """(position, encoder) of each JSON column among `columns`."""
    _check_defaults(table, columns)
    encoded = []
    for at, name in enumerate(columns):
        kind = table.columns[name].type
        if isinstance(kind, JSON):
            encoded.append((at, _json_or_null if kind.none_as_null else _json_text))
    return tuple(encoded)


@cache
def _bind_processors(
    table: Table, columns: tuple[str, ...], dialect: Any
) -> tuple[tuple[int, Any], ...]:
    """(position, the type's bind processor for `dialect`) of each column that has one."""
    _check_defaults(table, columns)
    found = []
    for at, name in enumerate(columns):
        process = table.columns[name].type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            found.append((at, process))
    return tuple(found)


@cache
def _qmark_insert(table: Table, columns: tuple[str, ...], dialect: Any) -> str:
    """The INSERT for `columns` (each a column of `table`), quoted as the dialect quotes."""
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(table.columns[name].name) for name in columns)
    marks = ", ".join("?" * len(columns))
    # Only the table's own names go into the text; the values are bound.
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES ({marks})"  # noqa: S608


def _copy_rows(
    connection: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """PostgreSQL: COPY `rows` (values in `columns` order) into `table`, in the
    connection's transaction."""
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    with driver_cursor(connection, statement) as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


@contextlib.contextmanager
def driver_cursor(connection: Connection, statement: str) -> Iterator[Any]:
    """A DB-API cursor of `connection`, in its transaction, for what SQLAlchemy cannot
    send. Errors come out as SQLAlchemy's (an IntegrityError for a duplicate key, naming
    `statement`), and a lost connection is handled as SQLAlchemy handles one lost during a
    statement: it is invalidated, and so is every pooled connection made before it (they
    are replaced at their next checkout, not each failing a request after a restart)."""
    fairy: Any = connection.connection
    cursor = fairy.cursor()
    dbapi = connection.dialect.loaded_dbapi
    try:
        yield cursor
    except dbapi.Error as exc:
        lost = connection.dialect.is_disconnect(exc, fairy.dbapi_connection, cursor)
        if lost:
            # What Connection._handle_dbapi_exception does; the pool offers no public call.
            connection.engine.pool._invalidate(fairy, exc, _checkin=False)
            connection.invalidate(exc)
        raise DBAPIError.instance(
            statement,
            None,
            exc,
            dbapi.Error,
            connection_invalidated=lost,
            dialect=connection.dialect,
        ) from exc
    finally:
        cursor.close()
