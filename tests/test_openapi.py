"""The committed OpenAPI document is the app's, and every route is documented."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.openapi import render

COMMITTED = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


def test_committed_openapi_matches_the_app() -> None:
    assert COMMITTED.read_text() == render(), (
        "openapi/openapi.json is stale: run `python -m service openapi`"
    )


def test_every_operation_has_a_summary_and_documented_errors() -> None:
    spec: dict[str, Any] = json.loads(render())
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), f"{method} {path} has no summary"
            if path in ("/healthz", "/readyz", "/metrics", "/v1/audit/jwks"):
                continue
            responses = operation["responses"]
            assert "401" in responses, f"{method} {path} does not document 401"
            assert "403" in responses, f"{method} {path} does not document 403"
