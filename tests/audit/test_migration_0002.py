"""Migration 0002 (audit tree store and keys) applies, reverts and re-applies cleanly."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import inspect

from service.core.database import build_engine
from service.core.migrations import downgrade, upgrade
from tests.support.databases import DatabaseFactory

pytestmark = pytest.mark.storage
NEW_TABLES = {"audit_subtrees", "audit_signing_keys"}


def tables(url: str) -> set[str]:
    engine = build_engine(url, 1)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_0002_is_reversible(db_factory: DatabaseFactory, backend: str) -> None:
    with contextlib.contextmanager(db_factory.empty)(backend) as url:
        upgrade(url, "0002")
        assert tables(url) >= NEW_TABLES
        downgrade(url, "0001")
        assert not tables(url) & NEW_TABLES
        assert "audit_events" in tables(url)
        upgrade(url, "0002")
        assert tables(url) >= NEW_TABLES
