"""SQLite's WAL is checkpointed on a thread of its own, never inside a commit."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from service.app import create_app
from service.core.database import WalCheckpointer, build_engine
from service.core.settings import Settings
from tests.support.api import Api


def autocheckpoint(settings: Settings) -> int:
    runtime = create_app(settings).state.runtime
    try:
        with runtime.db.connect() as connection:
            return int(connection.execute(text("PRAGMA wal_autocheckpoint")).scalar_one())
    finally:
        runtime.db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_commits_do_not_checkpoint_unless_configured_so(settings: Settings) -> None:
    assert autocheckpoint(settings) == 0
    assert autocheckpoint(settings.model_copy(update={"sqlite_checkpoint_seconds": 0})) == 1000
    unchecked = create_app(settings.model_copy(update={"sqlite_checkpoint_seconds": 0}))
    assert unchecked.state.runtime.checkpointer is None


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_has_no_checkpointer(settings: Settings) -> None:
    runtime = create_app(settings).state.runtime
    assert runtime.checkpointer is None
    runtime.db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_running_service_checkpoints_what_it_writes(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"sqlite_checkpoint_seconds": 0.05}))
    checkpointer = app.state.runtime.checkpointer
    assert isinstance(checkpointer, WalCheckpointer)
    with TestClient(app) as client:
        Api(client, app.state.runtime.settings).create_orgs()
        deadline = time.monotonic() + 10
        while checkpointer.frames_checkpointed == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert checkpointer.frames_checkpointed > 0


def test_stopping_checkpoints_what_is_left(tmp_path: Path) -> None:
    database = tmp_path / "wal.db"
    engine = build_engine(f"sqlite:///{database}", 2, background_checkpoints=True)
    checkpointer = WalCheckpointer(engine, interval=3600)  # no round before the final one
    checkpointer.start()
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1), (2), (3)"))
        assert checkpointer.frames_checkpointed == 0  # the commits did not checkpoint
        checkpointer.stop()
        assert checkpointer.frames_checkpointed > 0
    finally:
        engine.dispose()
    with sqlite3.connect(database) as reader:
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (3,)
