"""Production and durability settings that must stop the service from starting."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import create_engine, text

from service.app import create_app
from service.core.durability import UnsafeDurability
from service.core.settings import Settings
from service.decisions.engines import BundleRejected
from tests.support.databases import BACKENDS


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(environment="production")
    message = str(refused.value)
    for name in ("ACCORD_JWT_SECRET", "ACCORD_PSEUDONYM_KEY", "ACCORD_SIGNING_KEY_SEED"):
        assert name in message


def test_production_starts_with_real_secrets() -> None:
    settings = Settings(
        environment="production",
        jwt_secret="a-real-secret-from-a-vault-0123456789",
        pseudonym_key="another-real-secret-from-a-vault",
        signing_key_seed="ab" * 32,
    )
    assert settings.environment == "production"


def test_production_refuses_short_secrets() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(
            environment="production",
            jwt_secret="s" * 31,
            pseudonym_key="k" * 31,
            signing_key_seed="ab" * 32,
        )
    message = str(refused.value)
    assert "ACCORD_JWT_SECRET is shorter than 32 bytes" in message
    assert "ACCORD_PSEUDONYM_KEY is shorter than 32 bytes" in message
    assert Settings(
        environment="production", jwt_secret="s" * 32, pseudonym_key="k" * 32,
        signing_key_seed="ab" * 32,
    ).environment == "production"  # fmt: skip


def test_a_missing_or_malformed_signing_key_is_refused() -> None:
    for seed in ("", "not-hex" * 8, "ab" * 31):
        with pytest.raises(ValidationError, match="ACCORD_SIGNING_KEY_SEED"):
            Settings(signing_key_seed=seed)


# SQLite is not a case: Accord sets WAL and synchronous=FULL on every connection itself.
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"])
def test_unsafe_durability_refuses_to_start(settings: Settings) -> None:
    database = settings.database_url.rsplit("/", 1)[1]
    admin = create_engine(
        settings.database_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{database}" SET synchronous_commit = off'))
    admin.dispose()
    with (
        pytest.raises(UnsafeDurability, match="synchronous_commit is off"),
        TestClient(create_app(settings)),
    ):
        pass


@pytest.mark.parametrize("entrypoint", ["result", "review"])
def test_a_bundle_without_an_entrypoint_the_service_needs_is_refused(
    settings: Settings, tmp_path: Path, entrypoint: str
) -> None:
    """It compiles, but every decision (or every submission) would fail closed."""
    policies = tmp_path / "policies"
    shutil.copytree(settings.policy_dir, policies)
    module = (
        policies
        / "accord"
        / ("decision/decision.rego" if entrypoint == "result" else "agreement/review.rego")
    )
    source = re.sub(
        rf"^(default )?{entrypoint} := ", r"\1renamed := ", module.read_text(), flags=re.M
    )
    module.write_text(source)
    with pytest.raises(BundleRejected, match=f"\\.{entrypoint} is not defined"):
        create_app(settings.model_copy(update={"policy_dir": policies}))
