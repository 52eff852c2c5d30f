"""docker-compose.yml parses and brings up what the README says it does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def test_compose_runs_api_postgres_and_opa_with_health_checks() -> None:
    services = compose()["services"]
    assert {"api", "postgres", "opa", "migrate"} <= set(services)
    for name in ("api", "postgres", "opa"):
        assert "healthcheck" in services[name], f"{name} has no health check"
    api = services["api"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["opa"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["accord", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    environment = api["environment"]
    assert environment["ACCORD_POLICY_ENGINE"] == "opa"
    assert environment["ACCORD_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert environment["ACCORD_ENVIRONMENT"] == "production"


def test_opa_loads_the_policies_as_a_bundle() -> None:
    opa = compose()["services"]["opa"]
    assert "./policies:/policies:ro" in opa["volumes"]
    assert "--bundle" in opa["command"]
    assert "/policies" in opa["command"]


def test_readme_describes_the_compose_file() -> None:
    readme = (ROOT / "README.md").read_text()
    for word in ("docker-compose.yml", "PostgreSQL", "OPA", "migrate", "health check"):
        assert word in readme
    for secret in (
        "POSTGRES_PASSWORD",
        "ACCORD_JWT_SECRET",
        "ACCORD_PSEUDONYM_KEY",
        "ACCORD_SIGNING_KEY_SEED",
    ):
        assert secret in readme
        assert secret in (ROOT / "docker-compose.yml").read_text()
    assert (ROOT / "Dockerfile").exists()
