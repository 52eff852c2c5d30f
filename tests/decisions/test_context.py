"""Reading a decision's context: on PostgreSQL the agreement and the consents are read in
one round trip, and must come out exactly as the engine's separate reads give them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from service.app import create_app
from service.consents.models import Consent
from service.consents.service import for_decision
from service.core.database import build_engine
from service.core.settings import Settings
from service.decisions import context
from tests.support.api import Api
from tests.support.clock import MutableClock


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = build_engine(database_url, 2)
    yield engine
    engine.dispose()


@pytest.fixture
def app(settings: Settings, clock: MutableClock) -> FastAPI:
    """The default engine only: these tests read, they do not decide."""
    return create_app(settings, clock=clock)


@pytest.fixture
def reviewed(world: Api, clock: MutableClock) -> str:
    """An active agreement with an ethics review, and consents of every kind: given,
    withdrawn, with an end date, a minor's with a guardian, and the recipient's own."""
    now = clock.now()
    agreement_id = world.active(now, reviewed=True)
    world.consent(now, "subject-1")
    world.consent(now, "subject-2", valid_until=(now + timedelta(days=30)).isoformat())
    world.consent(
        now,
        "subject-3",
        subject_is_minor=True,
        guardian={"guardian_id": "parent-3", "relationship": "parent"},
    )
    withdrawn = world.consent(now, "subject-4")
    world.withdraw(withdrawn["id"])
    world.consent(now, "subject-1", org="uni-lab")  # the recipient's: not read
    return agreement_id


def pseudonyms(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        found = connection.execute(select(Consent.subject_pseudonym).distinct()).scalars()
        return [*sorted(found), "ps_" + "0" * 64]  # and a subject without consent


def read_apart(engine: Engine, agreement_id: str, subjects: list[str]) -> tuple[object, object]:
    """The engine's reads, one statement after the other."""
    with engine.connect() as connection:
        rows = connection.execute(context._AGREEMENT, {"agreement_id": agreement_id}).all()
        agreement = context._agreement_from_rows(rows)
        assert agreement is not None
        return agreement, for_decision(connection, subjects, agreement.providers)


# The decision thread reads in autocommit mode on PostgreSQL; a read inside a transaction
# must give the same.
@pytest.mark.parametrize("autocommit", [True, False], ids=["autocommit", "transaction"])
def test_read_together_is_what_the_reads_apart_give(
    engine: Engine, reviewed: str, backend: str, autocommit: bool
) -> None:
    subjects = pseudonyms(engine)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with engine.connect() as connection:
        if autocommit:
            connection.execution_options(isolation_level="AUTOCOMMIT")
        together = context._read(connection, reviewed, subjects)
    # PostgreSQL reads through the driver's pipeline, no statement through the engine.
    reads = [s for s in statements if s.startswith("SELECT")]
    assert len(reads) == (0 if backend == "postgresql" else 2)
    agreement, consents = together
    assert agreement is not None
    assert agreement.review_doc is not None
    assert agreement.review_doc["conditions"] == ["aggregate outputs only"]
    # subject-1 to subject-4, one each (the provider's; not the recipient's of subject-1),
    # none for the last
    assert sorted(len(held) for held in consents.values()) == [1, 1, 1, 1]
    assert together == read_apart(engine, reviewed, subjects)


def test_an_unknown_agreement_has_no_context(engine: Engine, reviewed: str) -> None:
    with engine.connect() as connection:
        assert context._read(connection, "no-such-agreement", pseudonyms(engine)) == (None, {})
        assert context._read(connection, reviewed, [])[1] == {}


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("table", ["consents", "agreement_versions"])
def test_a_failed_read_is_the_engines_error_and_the_connection_recovers(
    engine: Engine, reviewed: str, table: str
) -> None:
    subjects = pseudonyms(engine)
    with engine.connect() as connection:
        # In this transaction only, one read's table is gone: the pipelined read fails.
        connection.execute(text(f"ALTER TABLE {table} RENAME TO gone_elsewhere"))
        with pytest.raises(ProgrammingError) as failed:
            context._read(connection, reviewed, subjects)
        connection.rollback()
        assert context._read(connection, reviewed, subjects) == read_apart(
            engine, reviewed, subjects
        )
    assert isinstance(failed.value.orig, psycopg.errors.UndefinedTable)
    assert f'relation "{table}" does not exist' in str(failed.value.orig)
    # Either statement may have failed: the error names both.
    assert "FROM agreement_versions" in str(failed.value.statement)
    assert "FROM consents" in str(failed.value.statement)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_lost_connection_is_invalidated_with_the_pool(engine: Engine, reviewed: str) -> None:
    """As when a statement through the engine finds its connection gone: the connection is
    discarded, and so is every pooled one made before it, at its next checkout."""
    subjects = pseudonyms(engine)
    connection, other = engine.connect(), engine.connect()
    pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    older = other.execute(text("SELECT pg_backend_pid()")).scalar_one()
    other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    other.close()  # alive, back in the pool
    with pytest.raises(OperationalError) as failed:
        context._read(connection, reviewed, subjects)
    connection.close()
    assert failed.value.connection_invalidated
    # Both pooled records, the lost one's and the older live one's, give new connections.
    with engine.connect() as first, engine.connect() as second:
        pids = {c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in (first, second)}
        assert context._read(first, reviewed, subjects)[0] is not None
    assert not pids & {pid, older}
