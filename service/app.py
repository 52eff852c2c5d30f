"""The application factory."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from functools import partial

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from service import __version__
from service.agreements import service as agreements
from service.agreements.router import router as agreements_router
from service.audit import log as audit
from service.audit.actions import AuditAction, Outcome
from service.audit.router import router as audit_router
from service.audit.signer import run_tree_head_signer, tree_head_interval
from service.consents import service as consents
from service.consents.router import router as consents_router
from service.core import openapi_problems
from service.core.clock import Clock, SystemClock
from service.core.context import Runtime
from service.core.database import build_engine, session_factory, transaction
from service.core.deps import Actor
from service.core.durability import check_durability
from service.core.errors import TYPE_BASE, AccordError, install_error_handlers, problem
from service.core.http import BodyTooLarge, EdgeMiddleware
from service.core.identity import Principal, Role, TokenVerifier
from service.core.observability import Metrics
from service.core.pseudonym import Pseudonymiser
from service.core.settings import PolicyEngineKind, Settings
from service.decisions import bundle
from service.decisions.decider import Decider
from service.decisions.engines import PolicyEngine, load_bundle
from service.decisions.engines.embedded import EmbeddedEngine, check_contract
from service.decisions.router import DecisionEndpoint
from service.decisions.router import router as decisions_router
from service.decisions.writer import DecisionWriter
from service.health import router as health_router
from service.registry import service as registry
from service.registry.gate import OrganisationGate
from service.registry.router import router as registry_router
from service.registry.snapshot import TaxonomyCache
from service.reviews.router import router as reviews_router

log = logging.getLogger("accord")
# Routes are matched in order: the decision endpoint, called before every exchange, first.
ROUTERS: tuple[APIRouter, ...] = (
    decisions_router,
    health_router,
    registry_router,
    agreements_router,
    reviews_router,
    consents_router,
    bundle.router,
    audit_router,
)
SYSTEM = Principal(subject="accord-system", role=Role.ADMIN, organisation_id="accord")


def build_policy_engine(settings: Settings) -> PolicyEngine:
    policy_bundle = load_bundle(settings.policy_dir)
    check_contract(policy_bundle)
    if settings.policy_engine is PolicyEngineKind.OPA:
        from service.decisions.engines.opa import OpaEngine

        return OpaEngine(
            policy_bundle,
            settings.opa_url,
            settings.opa_timeout_seconds,
            upload=settings.opa_upload_policies,
        )
    return EmbeddedEngine(policy_bundle, settings.policy_timeout_seconds)


def build_runtime(
    settings: Settings, *, clock: Clock | None = None, policy: PolicyEngine | None = None
) -> Runtime:
    db = build_engine(settings.database_url, settings.database_pool_size)
    read_sessions = session_factory(db, read_only=True)
    sessions = session_factory(db)
    runtime = Runtime(
        settings=settings,
        db=db,
        sessions=sessions,
        read_sessions=read_sessions,
        verifier=TokenVerifier(settings),
        pseudonymise=Pseudonymiser(settings.pseudonym_key.get_secret_value().encode()),
        clock=clock or SystemClock(),
        policy=policy or build_policy_engine(settings),
        metrics=Metrics(),
        organisations=OrganisationGate(read_sessions),
        taxonomy=TaxonomyCache(read_sessions),
        decision_writer=DecisionWriter(sessions, threads=settings.decision_writers),
    )
    runtime.decider = Decider(runtime, settings.decision_threads)
    return runtime


async def record_refusal(runtime: Runtime, request: Request, exc: AccordError) -> None:
    """An authenticated caller was refused (403) or shown nothing (404): audit the attempt."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return
    route = getattr(request.scope.get("route"), "path", request.url.path)[:64]
    agreement_id = request.path_params.get("agreement_id")
    record = audit.EventRecord(
        AuditAction.ACCESS_REFUSED,
        "route",
        route,
        outcome=Outcome.REFUSED,
        agreement_id=agreement_id[:36] if isinstance(agreement_id, str) else None,
        reasons=[exc.slug],
        details={"method": request.method, "status": exc.status},
    )
    actor = Actor(principal, getattr(request.state, "request_id", None))

    def write() -> None:
        for session in transaction(runtime.sessions):
            audit.append(session, actor, record, runtime.clock.now())

    try:
        await run_in_threadpool(write)
    except Exception:  # the refusal stands either way; losing its record is logged
        log.exception("could not record a refused access")


def run_sweep(runtime: Runtime) -> dict[str, int]:
    """Scheduled lifecycle changes: activations, expiries, consent expiry."""
    actor = Actor(SYSTEM, None)
    now = runtime.clock.now()
    for session in transaction(runtime.sessions):
        counts = agreements.sweep(session, actor, now)
        counts["consents_expired"] = consents.expire_due(session, actor, now)
    return counts


def _sweeper(runtime: Runtime, stop: threading.Event) -> None:
    while not stop.wait(runtime.settings.sweep_interval_seconds):
        try:
            run_sweep(runtime)
        except Exception:  # the next round retries; a failed round changed nothing
            log.exception("lifecycle sweep failed")


def _policy_follower(runtime: Runtime, stop: threading.Event) -> None:
    while not stop.wait(runtime.settings.policy_follow_seconds):
        try:
            bundle.follow(runtime)
        except Exception:  # e.g. the database is away, or OPA refuses: the next round retries
            log.exception("following the policy revision failed")


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    policy: PolicyEngine | None = None,
) -> FastAPI:
    settings = settings or Settings()
    runtime = build_runtime(settings, clock=clock, policy=policy)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            check_durability(runtime.db)
        except Exception:
            runtime.db.dispose()
            raise
        for session in transaction(runtime.sessions):
            registry.ensure_operator(session, settings.operator_org, runtime.clock.now())
            registry.install_default_taxonomy(session)
        bundle.record_loaded(runtime, Actor(SYSTEM, None))
        stop = threading.Event()
        sweeper = None
        if settings.sweep_interval_seconds > 0:
            sweeper = threading.Thread(target=_sweeper, args=(runtime, stop), daemon=True)
            sweeper.start()
        follower = None
        if settings.policy_follow_seconds > 0:
            follower = threading.Thread(
                target=_policy_follower, args=(runtime, stop), daemon=True, name="policy-follower"
            )
            follower.start()
        signer = None
        if tree_head_interval(settings) > 0:
            signer = threading.Thread(
                target=run_tree_head_signer,
                args=(runtime, stop),
                daemon=True,
                name="audit-tree-heads",
            )
            signer.start()
        try:
            yield
        finally:
            stop.set()
            for thread in (sweeper, follower, signer):
                if thread is not None:
                    thread.join(timeout=5)
            runtime.decider.close()
            runtime.decision_writer.close()
            runtime.policy.close()
            runtime.db.dispose()

    app = FastAPI(
        title="Accord",
        version=__version__,
        summary="Data-sharing agreements, consents and policy decisions with a verifiable log",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    install_error_handlers(app, on_refusal=partial(record_refusal, runtime))

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return problem(request, 413, TYPE_BASE + "too-large", "Request body too large", str(exc))

    app.add_middleware(DecisionEndpoint)  # inside EdgeMiddleware: added first
    app.add_middleware(
        EdgeMiddleware,
        metrics=runtime.metrics,
        max_body_bytes=settings.max_body_bytes,
        rate_per_second=settings.rate_limit_per_second,
        burst=settings.rate_limit_burst,
        known_caller=runtime.verifier.known_caller,
    )
    for router in ROUTERS:
        app.include_router(router)
    openapi_problems.install(app)
    return app
