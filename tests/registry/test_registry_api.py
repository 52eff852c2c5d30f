"""Organisations and taxonomies through the HTTP API."""

from __future__ import annotations

from tests.support.api import Api


def test_admin_registers_organisation_and_everyone_can_list(api: Api) -> None:
    created = api.ok(
        api.post(
            "/v1/organisations",
            "admin",
            "accord",
            json={"id": "city-lab", "name": "City Lab", "sector": "academia"},
        ),
        201,
    )
    assert created["enabled"] is True
    listed = api.ok(api.get("/v1/organisations", "admin", "accord"))
    assert "city-lab" in {o["id"] for o in listed}
    assert api.ok(api.get("/v1/organisations/city-lab", "admin", "accord"))["sector"] == "academia"


def test_only_admins_register_organisations(world: Api) -> None:
    response = world.post(
        "/v1/organisations",
        "steward",
        "uni-lab",
        json={"id": "rogue-org", "name": "Rogue", "sector": "industry"},
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/forbidden")


def test_duplicate_organisation_is_a_conflict(world: Api) -> None:
    response = world.post(
        "/v1/organisations",
        "admin",
        "accord",
        json={"id": "uni-lab", "name": "Again", "sector": "academia"},
    )
    assert response.status_code == 409


def test_bad_organisation_body_is_a_clear_422(api: Api) -> None:
    response = api.post(
        "/v1/organisations",
        "admin",
        "accord",
        json={"id": "Bad Id!", "name": "", "sector": "pirates", "enabled": False},
    )
    assert response.status_code == 422
    body = response.json()
    locations = {e["location"] for e in body["errors"]}
    assert {"body.id", "body.name", "body.sector", "body.enabled"} <= locations


def test_disabled_organisation_tokens_are_refused(world: Api) -> None:
    world.ok(world.patch("/v1/organisations/outsider", "admin", "accord", json={"enabled": False}))
    response = world.get("/v1/purposes", "partner", "outsider")
    assert response.status_code == 401


def test_default_taxonomy_ships_and_can_be_extended(world: Api) -> None:
    purposes = {p["code"]: p for p in world.ok(world.get("/v1/purposes", "partner", "uni-lab"))}
    assert purposes["research.public_health"]["parent_code"] == "research"
    added = world.ok(
        world.post(
            "/v1/purposes",
            "admin",
            "accord",
            json={"code": "research.public_health.vaccines", "label": "Vaccine research"},
        ),
        201,
    )
    assert added["parent_code"] == "research.public_health"
    orphan = world.post(
        "/v1/purposes", "admin", "accord", json={"code": "nowhere.child", "label": "Orphan"}
    )
    assert orphan.status_code == 422


def test_fields_report_sensitivity_through_their_category(world: Api) -> None:
    fields = {f["name"]: f for f in world.ok(world.get("/v1/data-fields", "steward", "uni-lab"))}
    assert fields["diagnosis_code"]["sensitive"] is True
    assert fields["postcode"]["sensitive"] is False
    world.ok(
        world.post(
            "/v1/data-categories",
            "admin",
            "accord",
            json={"code": "health.genomics", "label": "Genomics", "sensitive": True},
        ),
        201,
    )
    created = world.ok(
        world.post(
            "/v1/data-fields",
            "admin",
            "accord",
            json={"name": "genome_variant", "category": "health.genomics", "label": "Variant"},
        ),
        201,
    )
    assert created["sensitive"] is True


def test_requests_without_a_token_get_401_problem(api: Api) -> None:
    response = api.client.get("/v1/purposes")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["status"] == 401
