"""Function-level authorisation over the whole route table.

Every `/v1` route must declare its roles with a `RoleGuard`; a new route without one fails
here. Each role outside a route's rule gets 403, whatever the body or path.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from service.app import ROUTERS
from service.core.deps import RoleGuard
from service.core.identity import Role
from tests.support.api import Api

PUBLIC = {"/healthz", "/readyz", "/metrics", "/v1/audit/jwks"}


def _guards(dependant: Dependant) -> list[RoleGuard]:
    found = [dependant.call] if isinstance(dependant.call, RoleGuard) else []
    for sub in dependant.dependencies:
        found.extend(_guards(sub))
    return found


def route_rules() -> list[tuple[str, str, frozenset[Role]]]:
    rules = []
    for route in (r for router in ROUTERS for r in router.routes):
        if not isinstance(route, APIRoute) or route.path in PUBLIC:
            continue
        guards = _guards(route.dependant)
        assert guards, f"{route.methods} {route.path} declares no RoleGuard"
        allowed = frozenset.intersection(*(g.allowed for g in guards))
        for method in route.methods or ():
            rules.append((method, route.path, allowed))
    return rules


def test_every_route_refuses_every_role_outside_its_rule(world: Api) -> None:
    rules = route_rules()
    assert len(rules) >= 25
    checked = 0
    for method, path, allowed in rules:
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        for role in set(Role) - allowed:
            kwargs: dict[str, Any] = {"json": {}} if method in ("POST", "PATCH") else {}
            response = world.call(method, concrete, role, "uni-lab", **kwargs)
            assert response.status_code == 403, (method, path, role, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            checked += 1
    assert checked > 50


def test_the_admin_role_belongs_to_the_operator_organisation(world: Api) -> None:
    """An admin token of another organisation administers nothing (its own identity
    provider may well issue one); the refusal is recorded like any other."""
    organisation = {"id": "new-org", "name": "New", "sector": "industry"}
    for method, path, body in [
        ("POST", "/v1/organisations", organisation),
        ("PATCH", "/v1/organisations/health-trust", {"enabled": False}),
        ("POST", "/v1/policies/reload", None),
        ("GET", "/v1/audit/events", None),
    ]:
        response = world.call(method, path, "admin", "uni-lab", json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "operator" in response.json()["detail"]
    refused = world.ok(
        world.get("/v1/audit/events", "auditor", "council", params={"action": "access.refused"})
    )
    assert len(refused["items"]) == 4
    created = world.call("POST", "/v1/organisations", "admin", "accord", json=organisation)
    assert created.status_code == 201
