"""Decision API tests run on both policy engines: embedded regorus and OPA (test server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from service.app import create_app
from service.core.settings import Settings
from service.decisions.engines import PolicyEngine, load_bundle
from service.decisions.engines.embedded import EmbeddedEngine
from service.decisions.engines.opa import OpaEngine
from tests.support.api import Api
from tests.support.clock import MutableClock
from tests.support.opa_server import running_opa_server


@pytest.fixture(params=["embedded", "opa"])
def policy_engine(request: pytest.FixtureRequest, settings: Settings) -> Iterator[PolicyEngine]:
    bundle = load_bundle(settings.policy_dir)
    if request.param == "embedded":
        yield EmbeddedEngine(bundle)
        return
    # No OPA binary can be installed here: an OPA-REST-compatible server evaluating with
    # regorus stands in for it, and OpaEngine talks to it exactly as to a real OPA.
    with running_opa_server({}) as server:
        engine = OpaEngine(bundle, server.url, timeout_seconds=5.0)
        yield engine
        engine.close()


@pytest.fixture
def app(settings: Settings, clock: MutableClock, policy_engine: PolicyEngine) -> FastAPI:
    return create_app(settings, clock=clock, policy=policy_engine)


@pytest.fixture
def agreement(world: Api, clock: MutableClock) -> str:
    """Active and consent-based: research may receive postcode; subject-1 consented."""
    agreement_id = world.active(
        clock.now(), purposes=[{"purpose": "research", "fields": ["postcode"]}]
    )
    world.consent(clock.now(), "subject-1")
    return agreement_id
