"""Schemathesis fuzzing of every operation in the committed `openapi/openapi.json`.

Each operation is called in-process (ASGI, no network) once per role, with a valid token of
an organisation that exists, in both positive (schema-valid) and negative (schema-invalid)
generation modes, and every response goes through every Schemathesis check: no server
error; documented status codes, content types, headers and bodies; negative data rejected;
schema-valid data not refused as invalid; credentials enforced (each 2xx is replayed
without them and with a bogus token); undocumented methods refused with a true `Allow`.

Per operation and role: the document's examples, the coverage phase's deterministic sweep
of boundary and invalid values (for the roles the route admits), and MAX_EXAMPLES generated
cases split between the two modes. Every test starts from a copy of one database seeded
through the API, and half of the schema-valid paths are pointed at its real objects, so
reads and state changes get past 404.

Reproducible: the seed is fixed, generation is deterministic, the example database is off,
and every test starts from the same data, so a failure reruns by its test id, e.g.
`pytest "tests/fuzz/test_schemathesis.py::test_api[POST /v1/purposes][admin]"`. A server
error's traceback is in the failure's captured log. SQLite only: this fuzzes the HTTP surface,
which is the same on both backends. `ACCORD_FUZZ_EXAMPLES=100` runs a longer search.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import TestPhase
from schemathesis.python import asgi

from service.app import ROUTERS, create_app
from service.core.deps import RoleGuard
from service.core.identity import Role
from service.core.settings import Environment, Settings
from tests.support.api import Api
from tests.support.clock import MutableClock
from tests.support.databases import DatabaseFactory

OPENAPI = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
SEED = 20_261_126
MAX_EXAMPLES = int(os.environ.get("ACCORD_FUZZ_EXAMPLES", "8"))

# The caller of each role: an organisation the seeded database registers (the operator
# organisation for admins) and, where it matters, a party to the seeded agreement.
CALLERS = {
    "partner": "uni-lab",
    "steward": "uni-lab",
    "ethics_reviewer": "ethics-board",
    "auditor": "council",
    "admin": "accord",
}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class CurrentApp:
    """A stable ASGI application that forwards each request to the current test's app.

    Schemathesis binds one application to the schema at collection time, and its checks
    that send follow-up requests (`ignored_auth` probes without credentials) reach it
    through the schema. Each test builds its own app on its own database, so the schema is
    bound to this forwarder, which the `fuzz` fixture points at the test's app. The real
    app's lifespan is run by the test client fixture; the forwarder's own is a no-op.
    """

    def __init__(self) -> None:
        self.app: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.app is not None, "the fuzz fixture sets the app under test"
        started = False

        async def tracked(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            # Starlette sends the 500 problem, then re-raises for the server to log. A server
            # carries on, and so does this: the 500 fails `not_a_server_error`, and the
            # service's own log of the traceback is in the failure's captured log.
            if not started:
                raise


CURRENT = CurrentApp()

# An explicit config, so no `schemathesis.toml` lying around changes what CI runs.
schema = schemathesis.openapi.from_path(OPENAPI, config=schemathesis.Config(seed=SEED))
schema.app = CURRENT
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    no_shrink=True,
    database="none",
    # The bearer token is set by the test (a valid one per role); Schemathesis does not
    # generate `Authorization` values of its own. Forged tokens are tests/core's business.
    with_security_parameters=False,
)
# `examples` replays the document's examples; `coverage` sends a deterministic set of
# boundary and invalid values for every parameter and body property, plus missing required
# headers and undocumented methods (the only cases that exercise `missing_required_header`,
# `unsupported_method` and `allow_header_conformance`); `fuzzing` generates MAX_EXAMPLES
# random cases. `stateful` is left out: see the checks below.
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
# Every check Schemathesis has. Three of them cannot fire in this test, by construction:
# - `use_after_free` and `ensure_resource_availability` compare a response with an earlier
#   request of the same scenario (a DELETE then a GET; a POST then a GET of what it made):
#   they only run in the stateful phase, which needs links between operations that the
#   document does not declare. Accord has no DELETE operations.
# - `object_level_authorization` replays a read as the other identities of an `[auth.wfc]`
#   escalation set; here each test holds one identity. Object-level access has its own
#   table-driven tests (issue 5, "Object level").
# `max_response_time` has no default limit: 5 s (the policy deadline) catches a hang or a
# pathological input without making a slow CI runner flaky.
schema.config.checks.update(included_check_names=["all"], max_response_time=5.0)


PROBLEMS = "https://accord.example/problems/"


@schema.hook
def filter_failure(
    ctx: schemathesis.HookContext,
    failure: Any,
    case: schemathesis.Case[Any],
    response: schemathesis.Response,
) -> bool:
    """Drop one kind of false positive; every other failure stands.

    `positive_data_acceptance` (ST202) expects a schema-valid request never to be answered
    422. Accord also answers 422 when a request is well-formed but wrong in ways JSON Schema
    cannot express: it names an organisation, purpose or category that is not registered
    (problem type `invalid-request`), or it breaks a rule across fields, such as
    `valid_until` after `valid_from` (a model validator: one `Value error` on the body as a
    whole). Those are not the document promising something the service refuses. A 422 that
    blames a single field, on the other hand, is: the document should have said so.
    """
    if failure.code != "ST202" or response.status_code != 422:
        return True
    try:
        body = response.json()
    except ValueError:
        return True
    if body.get("type") == PROBLEMS + "invalid-request":
        return False
    errors = body.get("errors") or []
    cross_field = [e for e in errors if e.get("location") == "body"]
    return not (
        body.get("type") == PROBLEMS + "validation"
        and errors
        and len(cross_field) == len(errors)
        and all(str(e.get("message", "")).startswith("Value error,") for e in errors)
    )


@dataclass
class Seeded:
    """Real ids in the test's database, substituted into some generated paths."""

    path_values: dict[str, list[Any]]
    calls: int = 0


@pytest.fixture(scope="module", autouse=True)
def _stop_the_request_loop() -> Iterator[None]:
    """Close Schemathesis' event loop thread when the module is done.

    Schemathesis sends every in-process request through one event loop thread of its own,
    kept until interpreter exit, and its worker threads with it. The embedded policy engine
    caches a regorus engine per thread, and regorus panics when one is dropped on another
    thread, which is what interpreter shutdown does to the thread-locals of threads still
    alive ("regoruspy::Engine is unsendable, but is being dropped on another thread").
    Closing the loop now stops its workers, and each drops its engine on its own thread.
    """
    yield
    asgi._shutdown()  # the one way to close it; it is reopened on next use


def _test_settings(database_url: str) -> Settings:
    """The settings tests/conftest.py gives every test."""
    return Settings(
        environment=Environment.TEST,
        database_url=database_url,
        sweep_interval_seconds=0,
        database_pool_size=5,
        rate_limit_per_second=0,
    )


@pytest.fixture(scope="module")
def seeded(db_factory: DatabaseFactory) -> Iterator[tuple[Path, dict[str, list[Any]]]]:
    """A SQLite database with the five organisations, an active agreement, a draft, two
    consents, a decision and a signed tree head, built once through the API; each test
    gets a copy of it."""
    with db_factory.fresh("sqlite") as url:
        settings = _test_settings(url)
        clock = MutableClock()
        now = clock.now()
        with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as c:
            api = Api(c, settings)
            api.create_orgs()
            active = api.active(now)
            draft = api.draft(now)
            consents = [
                api.consent(now, "subject-1")["id"],
                api.consent(now, "subject-2", org="uni-lab")["id"],
            ]
            decision = api.ok(
                api.post(
                    "/v1/decisions",
                    "partner",
                    "uni-lab",
                    json={
                        "agreement_id": active,
                        "purpose": "research.public_health",
                        "fields": ["postcode"],
                        "subjects": ["subject-1"],
                    },
                )
            )
            # A signed tree head, for the audit routes that take a tree size.
            head = api.post("/v1/audit/tree-heads", "auditor", "council")
            sizes = [head.json()["tree_size"]] if head.status_code == 200 else []
        yield (
            Path(url.removeprefix("sqlite:///")),
            {
                "agreement_id": [active, draft],
                "version": [1],
                "consent_id": consents,
                "decision_id": [decision["decision_id"]],
                "org_id": list(CALLERS.values()),
                "seq": [0, 1],
                "size": sizes,
            },
        )


@pytest.fixture
def database_url(
    seeded: tuple[Path, dict[str, list[Any]]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A copy of the seeded database (SQLite only: see the module docstring)."""
    template, _ = seeded
    copy = tmp_path_factory.mktemp("fuzz") / "accord.db"
    shutil.copyfile(template, copy)
    yield f"sqlite:///{copy}"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)


@pytest.fixture
def fuzz(seeded: tuple[Path, dict[str, list[Any]]], client: TestClient, app: FastAPI) -> Seeded:
    """The app under test, started (by `client`) and behind the forwarder."""
    CURRENT.app = app
    return Seeded(path_values=seeded[1])


def _guards(dependant: Dependant) -> list[RoleGuard]:
    found = [dependant.call] if isinstance(dependant.call, RoleGuard) else []
    for sub in dependant.dependencies:
        found.extend(_guards(sub))
    return found


def _refused_by_role(case: schemathesis.Case[Any], role: str) -> bool:
    """Whether the route's `RoleGuard` turns this role away whatever the request says."""
    for route in (r for router in ROUTERS for r in router.routes):
        if (
            isinstance(route, APIRoute)
            and route.path == case.operation.path
            and case.method.upper() in (route.methods or ())
        ):
            guards = _guards(route.dependant)
            return bool(guards) and Role(role) not in frozenset.intersection(
                *(g.allowed for g in guards)
            )
    return False


def _use_real_ids(case: schemathesis.Case[Any], seeded: Seeded) -> None:
    """Every other case whose path was generated schema-valid gets real ids instead.

    Random strings almost never name an existing object, so without this a GET on an id
    would only ever answer 404. Only schema-valid paths are replaced (with values that are
    valid too), so a negative case stays negative and a positive one positive. The choice
    depends only on the case's position in the run, so it is as reproducible as the run.
    """
    seeded.calls += 1
    if not case.path_parameters or seeded.calls % 2:
        return
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH):
        return
    for name in case.path_parameters:
        values = seeded.path_values.get(name)
        if values:
            case.path_parameters[name] = values[seeded.calls // 2 % len(values)]


@pytest.mark.parametrize("role", list(CALLERS))
@schema.parametrize()
@settings(
    # Generate and replay explicit examples; no shrinking (the seed reproduces a failure),
    # no example database (a CI run never depends on a previous run's files).
    phases=[Phase.explicit, Phase.generate],
    # One app and database per (operation, role), shared by its examples on purpose: the
    # state the examples build up is part of what is fuzzed.
    # Times carry a year pattern beside `format: date-time`; date-times are generated and
    # then filtered by the pattern, which rejects most of them (a too_slow or
    # filter_too_much health check, not a finding).
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api(case: schemathesis.Case[Any], role: str, fuzz: Seeded, api: Api) -> None:
    if (
        case.meta is not None
        and case.meta.phase.name is TestPhase.COVERAGE
        and _refused_by_role(case, role)
    ):
        # The coverage phase's boundary sweep is for roles the route admits: a role its
        # RoleGuard refuses gets 403 before anything the sweep varies is read (that rule
        # is proved route by route in tests/core/test_route_authorisation.py). Such a role
        # still gets the examples and every generated case, positive and negative.
        return
    _use_real_ids(case, fuzz)
    # Passed as request headers rather than written into `case.headers`: Schemathesis then
    # knows the credentials are real (not generated), and `ignored_auth` probes the same
    # request without them and with a bogus token, expecting 401.
    case.call_and_validate(headers={"Authorization": f"Bearer {api.token(role, CALLERS[role])}"})
