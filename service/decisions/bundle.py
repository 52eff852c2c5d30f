"""Loading and reloading the policy bundle, with an audit event either way.

A reload reaches the process that serves it. The others (uvicorn workers, replicas) follow
the log: every few seconds each takes the revision of the latest `policy.loaded` event, if
it is not its own and `policies/` here holds it (`follow`).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import select

from service.audit import log as audit
from service.audit.actions import AuditAction, Outcome
from service.audit.models import AuditEvent
from service.core.context import Runtime
from service.core.database import transaction
from service.core.deps import Actor, RuntimeDep, request_id, roles
from service.core.errors import Forbidden, InvalidRequest, problem_responses
from service.core.identity import Principal, Role
from service.decisions.engines import BundleRejected, load_bundle
from service.decisions.engines.embedded import check_contract

log = logging.getLogger("accord.policies")
router = APIRouter(prefix="/v1/policies", tags=["policies"])


class PolicyStatus(BaseModel):
    engine: str
    revision: str


def _record(
    runtime: Runtime, actor: Actor, action: AuditAction, revision: str, **details: str
) -> None:
    for session in transaction(runtime.sessions):
        audit.append(
            session,
            actor,
            audit.EventRecord(
                action,
                "policy_bundle",
                revision,
                outcome=Outcome.SUCCESS if action is AuditAction.POLICY_LOADED else Outcome.ERROR,
                policy_revision=revision,
                details={"engine": runtime.policy.name, **details},
            ),
            runtime.clock.now(),
        )


def record_loaded(runtime: Runtime, actor: Actor) -> None:
    _record(runtime, actor, AuditAction.POLICY_LOADED, runtime.policy.revision)


def reload(runtime: Runtime, actor: Actor) -> str:
    """Compile the bundle on disk and switch to it; a bad bundle leaves the old one in force."""
    previous = runtime.policy.revision
    try:
        bundle = load_bundle(runtime.settings.policy_dir)
        check_contract(bundle)
        runtime.policy.load(bundle)
    except BundleRejected as exc:
        _record(runtime, actor, AuditAction.POLICY_REJECTED, previous, error=str(exc)[:500])
        raise InvalidRequest(f"policy bundle rejected, revision {previous} stays: {exc}") from exc
    if runtime.policy.revision != previous:
        _record(
            runtime, actor, AuditAction.POLICY_LOADED, runtime.policy.revision, previous=previous
        )
    return runtime.policy.revision


def follow(runtime: Runtime) -> bool:
    """Take the revision another process loaded last (the latest `policy.loaded` event), if
    this process serves another and `policies/` here holds that one; True when it switched.
    Not recorded again: the load that chose the revision was."""
    with runtime.read_sessions() as session:
        latest = session.scalar(
            select(AuditEvent.policy_revision)
            .where(AuditEvent.action == AuditAction.POLICY_LOADED.value)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
    if latest is None or latest == runtime.policy.revision:
        return False
    bundle = load_bundle(runtime.settings.policy_dir)
    if bundle.revision != latest:
        log.warning("policies/ does not hold the revision loaded last (%s); staying", latest)
        return False
    check_contract(bundle)
    runtime.policy.load(bundle)
    log.info("took policy revision %s, loaded by another process", latest)
    return True


@router.get(
    "",
    summary="The policy engine and bundle revision in force",
    responses=problem_responses(Forbidden),
)
def policy_status(
    runtime: RuntimeDep, _: Annotated[Principal, Depends(roles(*Role))]
) -> PolicyStatus:
    return PolicyStatus(engine=runtime.policy.name, revision=runtime.policy.revision)


@router.post(
    "/reload",
    summary="Reload policies/ without a restart",
    responses=problem_responses(Forbidden, InvalidRequest),
)
def reload_policies(
    runtime: RuntimeDep,
    principal: Annotated[Principal, Depends(roles(Role.ADMIN))],
    rid: Annotated[str | None, Depends(request_id)],
) -> PolicyStatus:
    reload(runtime, Actor(principal, rid))
    return PolicyStatus(engine=runtime.policy.name, revision=runtime.policy.revision)
