"""`accord audit …`: verify the log, sign a tree head, rotate the signing key."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session, sessionmaker

from service.audit import keys, signer
from service.audit.schemas import SignedTreeHead
from service.audit.signing import SigningKey
from service.audit.verify import describe, verify_log
from service.core.clock import Clock, SystemClock
from service.core.database import build_engine, session_factory, transaction
from service.core.settings import Settings

app = typer.Typer(help="The audit log: verify it, sign tree heads, rotate the signing key.")


@dataclass
class _Runtime:
    """Just the database and clock: the CLI needs no policy engine."""

    settings: Settings
    sessions: sessionmaker[Session]
    read_sessions: sessionmaker[Session]
    clock: Clock


@contextlib.contextmanager
def _runtime() -> Iterator[_Runtime]:
    settings = Settings()
    engine = build_engine(settings.database_url, 2)
    try:
        yield _Runtime(
            settings,
            session_factory(engine),
            session_factory(engine, read_only=True),
            SystemClock(),
        )
    finally:
        engine.dispose()


def _pinned(path: Path) -> dict[str, bytes]:
    """kid -> raw key from a JWK Set file (e.g. one fetched earlier from /v1/audit/jwks)."""
    document = json.loads(path.read_text())
    pinned = {}
    for jwk in document.get("keys", []):
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            x = str(jwk["x"])
            pinned[str(jwk["kid"])] = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
    if not pinned:
        raise typer.BadParameter(f"{path} holds no Ed25519 keys")
    return pinned


@app.command()
def verify(
    jwks: Annotated[
        Path | None,
        typer.Option(help="trust only the keys in this JWK Set file", exists=True),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="processes re-hashing events (large logs)")
    ] = max(1, (os.cpu_count() or 1) - 1),  # one core stays with the tree being built
) -> None:
    """Recompute every leaf and signed head; exit 1 naming the first event that does not match."""
    pinned = None if jwks is None else _pinned(jwks)
    with _runtime() as runtime:
        report = verify_log(runtime, pinned, workers)
    if json_output:
        typer.echo(json.dumps(describe(report), indent=2))
    elif report.ok:
        typer.echo(
            f"ok: {report.events} events, {report.heads} signed heads "
            f"({report.events_per_second:,.0f} events/s)"
        )
    else:
        for problem in report.problems:
            at = "" if problem.seq is None else f" at event {problem.seq}"
            head = "" if problem.head_size is None else f" (head of size {problem.head_size})"
            typer.echo(f"{problem.kind}{at}{head}: {problem.detail}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("sign-tree-head")
def sign_tree_head() -> None:
    """Sign a tree head over the whole log now and print it."""
    with _runtime() as runtime:
        head = signer.sign_tree_head(runtime)
    typer.echo(SignedTreeHead.of(head).model_dump_json(indent=2))


@app.command("rotate-key")
def rotate_key() -> None:
    """Start signing with the configured key once ACCORD_SIGNING_KEY_SEED has changed.

    Records `signing_key.rotated` and signs a head with the new key; the retired key stays
    in the JWKS so the heads it signed still verify.
    """
    with _runtime() as runtime:
        key = keys.signing_key(runtime.settings)
        for session in transaction(runtime.read_sessions):
            known = {k.key_id for k in keys.registered_keys(session)}
        if key.key_id in known:
            typer.echo(f"key {key.key_id} is already registered: set a new ACCORD_SIGNING_KEY_SEED")
            raise typer.Exit(1)
        head = signer.sign_tree_head(runtime)
    typer.echo(f"now signing with {key.key_id}; signed a head of {head.size} events")


@app.command("generate-key")
def generate_key() -> None:
    """Print a fresh random seed for ACCORD_SIGNING_KEY_SEED (keep it secret)."""
    seed = secrets.token_bytes(32)
    typer.echo(f"ACCORD_SIGNING_KEY_SEED={seed.hex()}")
    typer.echo(f"# kid {SigningKey.from_seed(seed).key_id}", err=True)
