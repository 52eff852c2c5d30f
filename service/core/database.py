"""Engine, session and the declarative base shared by every domain's models."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import orjson
from sqlalchemy import JSON, MetaData, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError
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
