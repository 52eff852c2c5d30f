"""Loading and reloading the policy bundle, with an audit event either way."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from service.audit import log as audit
from service.audit.actions import AuditAction, Outcome
from service.core.context import Runtime
from service.core.database import transaction
from service.core.deps import Actor, RuntimeDep, request_id, roles
from service.core.errors import Forbidden, InvalidRequest, problem_responses
from service.core.identity import Principal, Role
from service.decisions.engines import BundleRejected, load_bundle
from service.decisions.engines.embedded import check_contract

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
