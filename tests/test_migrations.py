"""Migrations are the only way the schema is made: they match the models and reverse."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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
