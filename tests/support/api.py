"""A thin HTTP helper: calls the API as a given role of a given organisation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from httpx2 import Response

from service.core.identity import Role, mint_token
from service.core.settings import Settings

ORGS = {
    "health-trust": "health",
    "uni-lab": "academia",
    "council": "government",
    "outsider": "industry",
    "ethics-board": "academia",
}


class Api:
    def __init__(self, client: TestClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def token(self, role: Role | str, org: str, subject: str | None = None) -> str:
        role = Role(role)
        return mint_token(
            self.settings, subject=subject or f"{role.value}@{org}", role=role, organisation_id=org
        )

    def call(self, method: str, path: str, role: Role | str, org: str, **kwargs: Any) -> Response:
        headers = {"Authorization": f"Bearer {self.token(role, org)}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, role: Role | str, org: str, **kwargs: Any) -> Response:
        return self.call("GET", path, role, org, **kwargs)

    def post(self, path: str, role: Role | str, org: str, **kwargs: Any) -> Response:
        return self.call("POST", path, role, org, **kwargs)

    def patch(self, path: str, role: Role | str, org: str, **kwargs: Any) -> Response:
        return self.call("PATCH", path, role, org, **kwargs)

    def ok(self, response: Response, status: int = 200) -> Any:
        assert response.status_code == status, response.text
        return response.json()

    # --- building blocks for tests -------------------------------------------------------

    def create_orgs(self) -> None:
        for org_id, sector in ORGS.items():
            self.ok(
                self.post(
                    "/v1/organisations",
                    "admin",
                    "accord",
                    json={"id": org_id, "name": org_id.title(), "sector": sector},
                ),
                201,
            )

    def terms(self, now: datetime, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "title": "Public health research",
            "providers": ["health-trust"],
            "recipients": ["uni-lab"],
            "legal_basis": "consent",
            "retention_days": 365,
            "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_until": (now + timedelta(days=365)).isoformat(),
            "minimisation": {"mode": "strict", "min_cohort": 10},
            "pseudonymisation_required": True,
            "jurisdiction": "UK",
            "purposes": [
                {"purpose": "research.public_health", "fields": ["postcode", "date_of_birth"]}
            ],
        }
        body.update(overrides)
        return body

    def draft(self, now: datetime, **overrides: Any) -> str:
        created = self.ok(
            self.post("/v1/agreements", "steward", "uni-lab", json=self.terms(now, **overrides)),
            201,
        )
        return str(created["id"])

    def version_path(self, agreement_id: str, version: int = 1) -> str:
        return f"/v1/agreements/{agreement_id}/versions/{version}"

    def approve_all(self, agreement_id: str, version: int = 1) -> dict[str, Any]:
        path = self.version_path(agreement_id, version)
        body: dict[str, Any] = {}
        for org in self.ok(self.get(path, "steward", "uni-lab"))["awaiting_approval_from"]:
            body = self.ok(self.post(f"{path}/approve", "steward", org, json={"comment": "ok"}))
        return body

    def review(self, agreement_id: str, now: datetime, version: int = 1, **overrides: Any) -> Any:
        body = {
            "outcome": "approved_with_conditions",
            "conditions": ["aggregate outputs only"],
            "reference": "REB-1",
            "valid_from": (now - timedelta(days=1)).isoformat(),
            "valid_until": (now + timedelta(days=365)).isoformat(),
            **overrides,
        }
        return self.ok(
            self.post(
                f"{self.version_path(agreement_id, version)}/ethics-reviews",
                "ethics_reviewer",
                "ethics-board",
                json=body,
            ),
            201,
        )

    def active(self, now: datetime, *, reviewed: bool = False, **overrides: Any) -> str:
        """An agreement walked to `active` through the API."""
        agreement_id = self.draft(now, **overrides)
        path = self.version_path(agreement_id)
        self.ok(self.post(f"{path}/submit", "steward", "uni-lab"))
        if reviewed:
            self.review(agreement_id, now)
        approved = self.approve_all(agreement_id)
        assert approved["status"] == "approved", approved
        self.ok(self.post(f"{path}/activate", "steward", "uni-lab"))
        return agreement_id

    def consent(
        self, now: datetime, subject: str, org: str = "health-trust", **overrides: Any
    ) -> Any:
        body = {
            "subject_id": subject,
            "purposes": ["research"],
            "categories": ["health", "identity", "contact"],
            "evidence": {
                "method": "web_form",
                "notice_version": "v1",
                "collected_at": (now - timedelta(hours=1)).isoformat(),
            },
            **overrides,
        }
        return self.ok(self.post("/v1/consents", "partner", org, json=body), 201)

    def withdraw(self, consent_id: str, org: str = "health-trust") -> Any:
        """The controller's partner system withdraws a consent."""
        path = f"/v1/consents/{consent_id}/withdraw"
        return self.ok(self.post(path, "partner", org, json={"reason": "asked"}))

    def amend(self, agreement_id: str, org: str = "uni-lab", **changes: Any) -> Any:
        """A steward of `org` drafts an amendment (the next version) with these changes."""
        path = f"/v1/agreements/{agreement_id}/amendments"
        return self.ok(self.post(path, "steward", org, json=changes), 201)

    def decide(self, agreement_id: str, subject: str = "subject-1") -> dict[str, Any]:
        """uni-lab's partner asks for one subject's postcode for public-health research."""
        body = {
            "agreement_id": agreement_id,
            "purpose": "research.public_health",
            "fields": ["postcode"],
            "subjects": [subject],
        }
        response = self.post("/v1/decisions", "partner", "uni-lab", json=body)
        result: dict[str, Any] = self.ok(response)
        return result
