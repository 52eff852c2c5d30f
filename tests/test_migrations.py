"""Migrations are the only way the schema is made: they match the models and reverse."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from service.core.database import build_engine
from service.core.migrations import downgrade, upgrade
from service.core.settings import Settings
from service.demo import seed
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


def test_subject_rows_are_keyed_by_pseudonym_and_survive_the_change(empty_url: str) -> None:
    """Migration 0008: one key, (pseudonym, seq), with no second index; on SQLite the
    table is that key (WITHOUT ROWID). The rows, and append-only, survive both ways."""
    upgrade(empty_url, "0007")
    engine = build_engine(empty_url)
    rows = {(3, "ps_b"), (1, "ps_b"), (2, "ps_a")}
    table = "audit_event_subjects"

    def shape() -> tuple[list[str], list[list[str | None]]]:
        inspector = inspect(engine)
        key = inspector.get_pk_constraint(table)["constrained_columns"]
        return key, [index["column_names"] for index in inspector.get_indexes(table)]

    def stored() -> set[tuple[int, str]]:
        with engine.connect() as connection:
            return {
                (s, p)
                for s, p in connection.execute(
                    text("SELECT seq, pseudonym FROM audit_event_subjects")
                )
            }

    try:
        with engine.begin() as connection:
            for seq, pseudonym in rows:
                connection.execute(
                    text("INSERT INTO audit_event_subjects (seq, pseudonym) VALUES (:s, :p)"),
                    {"s": seq, "p": pseudonym},
                )
        upgrade(empty_url)
        assert shape() == (["pseudonym", "seq"], [])
        if engine.dialect.name == "sqlite":
            with engine.connect() as connection:
                ddl = connection.scalar(
                    text("SELECT sql FROM sqlite_master WHERE name = 'audit_event_subjects'")
                )
            assert "WITHOUT ROWID" in ddl
        assert stored() == rows
        with pytest.raises(Exception, match="append-only"), engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_event_subjects"))
        downgrade(empty_url, "0007")
        assert shape() == (["seq", "pseudonym"], [["pseudonym"]])
        assert stored() == rows
        with pytest.raises(Exception, match="append-only"), engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_event_subjects"))
    finally:
        engine.dispose()


def test_the_latest_migrations_reverse_and_replay_on_a_seeded_database(
    empty_url: str, settings: Settings
) -> None:
    """With rows that reference agreement_versions (parties, approvals), as any deployment
    has: a migration that rebuilt the table would fail on its foreign keys."""
    upgrade(empty_url)
    assert "agreements" in seed(settings.model_copy(update={"database_url": empty_url}))
    engine = build_engine(empty_url)

    def versions() -> list[tuple[str, str]]:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT id, status FROM agreement_versions ORDER BY id"))
            return [(row[0], row[1]) for row in rows]

    try:
        before = versions()
        assert before
        downgrade(empty_url, "0008")
        assert versions() == before
        upgrade(empty_url)
        assert versions() == before
        with engine.connect() as connection:
            departing = connection.scalars(text("SELECT departing FROM agreement_versions")).all()
        assert {str(d).replace(" ", "") for d in departing} == {"[]"}
    finally:
        engine.dispose()
