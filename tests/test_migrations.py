"""Migrations are the only way the schema is made: they match the models and reverse."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from service.core.database import build_engine
from service.core.migrations import downgrade, upgrade
from service.models import Base
from tests.support.databases import DatabaseFactory


@pytest.fixture
def empty_url(db_factory: DatabaseFactory, backend: str) -> object:
    yield from db_factory.empty(backend)


def test_migrations_match_the_models_and_are_reversible(empty_url: str) -> None:
    upgrade(empty_url)
    engine = build_engine(empty_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
        downgrade(empty_url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(empty_url)
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_large_json_columns_use_lz4_on_postgresql(empty_url: str) -> None:
    upgrade(empty_url)
    engine = build_engine(empty_url)
    query = text(
        "SELECT attrelid::regclass::text || '.' || attname, attcompression FROM pg_attribute "
        "WHERE attrelid IN ('decisions'::regclass, 'audit_events'::regclass) "
        "AND attname IN ('input_document', 'subject_results', 'subjects')"
    )
    try:
        with engine.connect() as connection:
            methods: dict[str, str] = {name: how for name, how in connection.execute(query)}
        assert methods == {
            "decisions.input_document": "l",
            "decisions.subject_results": "l",
            "audit_events.subjects": "l",
        }
        downgrade(empty_url, "0002")
        with engine.connect() as connection:
            assert {how for _, how in connection.execute(query)} == {""}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_subject_rows_are_added_in_pseudonym_order_on_postgresql(empty_url: str) -> None:
    upgrade(empty_url)
    engine = build_engine(empty_url)
    query = text("SELECT pg_get_functiondef('audit_event_subjects_fill'::regproc)")
    try:
        with engine.connect() as connection:
            assert "ORDER BY subject.pseudonym" in connection.scalar(query)
        downgrade(empty_url, "0006")
        with engine.connect() as connection:
            assert "ORDER BY" not in connection.scalar(query)
    finally:
        engine.dispose()
