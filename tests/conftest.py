"""Fixtures: a fresh migrated database per test on each backend, the app and an API helper."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.core.settings import Environment, Settings
from tests.support.api import Api
from tests.support.clock import MutableClock
from tests.support.databases import BACKENDS, DatabaseFactory


@pytest.fixture(scope="session")
def db_factory() -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(Path(tempfile.mkdtemp(prefix="accord-tests-")))
    yield factory
    factory.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(db_factory: DatabaseFactory, backend: str) -> Iterator[str]:
    with db_factory.fresh(backend) as url:
        yield url


@pytest.fixture
def clock() -> MutableClock:
    return MutableClock()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        environment=Environment.TEST,
        database_url=database_url,
        sweep_interval_seconds=0,
        database_pool_size=5,
        rate_limit_per_second=0,
        tree_head_interval_seconds=0,
    )


@pytest.fixture
def app(settings: Settings, clock: MutableClock) -> FastAPI:
    return create_app(settings, clock=clock)


@pytest.fixture
def limited_app(settings: Settings, clock: MutableClock) -> FastAPI:
    """An app whose rate limit is on: a burst of 3 requests, then 1 per second."""
    return create_app(
        settings.model_copy(update={"rate_limit_per_second": 1.0, "rate_limit_burst": 3}),
        clock=clock,
    )


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient, settings: Settings) -> Api:
    return Api(client, settings)


@pytest.fixture
def world(api: Api) -> Api:
    """The API with five organisations registered."""
    api.create_orgs()
    return api
