"""The JWKS and key rotation: retired keys stay published, so old heads keep verifying."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from typer.testing import CliRunner

from service.audit import keys, signer
from service.audit.actions import AuditAction
from service.audit.cli import app as audit_cli
from service.audit.models import AuditEvent, TreeHead
from service.audit.signing import SigningKey
from service.audit.verify import verify_log
from tests.audit.conftest import LogRuntime, append_events, tx
from tests.support.api import Api

pytestmark = pytest.mark.storage

NEW_SEED = "11" * 32


def rotated(runtime: LogRuntime, seed: str = NEW_SEED) -> LogRuntime:
    settings = runtime.settings.model_copy(update={"signing_key_seed": SecretStr(seed)})
    return dataclasses.replace(runtime, settings=settings)


def test_the_jwks_is_public_and_lists_the_signing_key(api: Api) -> None:
    response = api.client.get("/v1/audit/jwks")
    assert response.status_code == 200
    (key,) = response.json()["keys"]
    current = keys.signing_key(api.settings)
    assert key == current.jwk()
    assert (key["kty"], key["crv"], key["alg"]) == ("OKP", "Ed25519", "EdDSA")


def test_rotation_is_recorded_and_old_heads_still_verify(log_runtime: LogRuntime) -> None:
    append_events(log_runtime, 3)
    old = signer.sign_tree_head(log_runtime)
    new_runtime = rotated(log_runtime)
    new = signer.sign_tree_head(new_runtime)
    new_key = SigningKey.from_seed(bytes.fromhex(NEW_SEED))
    assert new.key_id == new_key.key_id != old.key_id
    assert new.size == old.size + 1  # the rotation event itself
    with tx(log_runtime.read_sessions) as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.seq == old.size)).one()
        assert event.action == AuditAction.SIGNING_KEY_ROTATED
        assert event.details["previous_key_id"] == old.key_id
        assert event.details["key_id"] == new_key.key_id
        published = keys.jwks_document(session, new_key)["keys"]
        assert [k["kid"] for k in published] == [new_key.key_id, old.key_id]
        assert len(list(session.scalars(select(TreeHead)))) == 2
    report = verify_log(new_runtime)
    assert report.ok, report.problems
    assert report.heads == 2
    again = signer.sign_tree_head(new_runtime)  # no second rotation event
    assert again.size == new.size


def test_the_cli_rotates_and_verifies_against_a_pinned_jwks(
    log_runtime: LogRuntime, tmp_path: Path
) -> None:
    append_events(log_runtime, 2)
    signer.sign_tree_head(log_runtime)
    runner = CliRunner()
    env = {**os.environ, "ACCORD_DATABASE_URL": log_runtime.settings.database_url}
    same = runner.invoke(audit_cli, ["rotate-key"], env=env)
    assert same.exit_code == 1  # the configured key is the one already in use
    env["ACCORD_SIGNING_KEY_SEED"] = NEW_SEED
    rotation = runner.invoke(audit_cli, ["rotate-key"], env=env)
    assert rotation.exit_code == 0, rotation.output
    head = runner.invoke(audit_cli, ["sign-tree-head"], env=env)
    assert json.loads(head.output)["tree_size"] == 3
    with tx(log_runtime.read_sessions) as session:
        jwks = keys.jwks_document(session, keys.signing_key(rotated(log_runtime).settings))
    pinned = tmp_path / "jwks.json"
    pinned.write_text(json.dumps(jwks))
    ok = runner.invoke(audit_cli, ["verify", "--jwks", str(pinned)], env=env)
    assert ok.exit_code == 0, ok.output
    pinned.write_text(json.dumps({"keys": jwks["keys"][:1]}))  # forgets the retired key
    refused = runner.invoke(audit_cli, ["verify", "--jwks", str(pinned)], env=env)
    assert refused.exit_code == 1
    assert "bad_signature" in refused.output


def test_generate_key_prints_a_usable_seed() -> None:
    result = CliRunner().invoke(audit_cli, ["generate-key"])
    assert result.exit_code == 0
    seed = result.stdout.strip().removeprefix("ACCORD_SIGNING_KEY_SEED=")
    assert len(bytes.fromhex(seed)) == 32


def test_a_malformed_seed_is_refused(log_runtime: LogRuntime) -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        keys.signing_key(rotated(log_runtime, "not-hex").settings)
