"""The tree-head signing key: the configured seed, the registry of public keys, rotation.

The private key is only ever the configured `ACCORD_SIGNING_KEY_SEED`. Each public key that
signs a head is registered in `audit_signing_keys` (append-only), so after a rotation the
JWKS still publishes the retired keys and old heads stay verifiable. Registering a key when
another was registered before is a rotation and is recorded as `signing_key.rotated`.

Trust: a verifier should pin the JWKS it fetched (or was given) rather than trust whatever
keys the database lists, since whoever can write the database could add a key.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import log as audit
from service.audit.actions import AuditAction
from service.audit.signing import SigningKey, b64url, jwk
from service.audit.tree import insert_ignoring_conflicts
from service.audit.tree_models import AuditSigningKey
from service.core.clock import iso
from service.core.deps import Actor
from service.core.settings import Settings

__all__ = ["jwks_document", "public_keys", "register", "registered_keys", "signing_key"]


def signing_key(settings: Settings) -> SigningKey:
    """The configured Ed25519 key (ACCORD_SIGNING_KEY_SEED, 64 hex digits)."""
    seed = settings.signing_key_seed.get_secret_value().strip()
    try:
        raw = bytes.fromhex(seed)
    except ValueError:
        raise ValueError("ACCORD_SIGNING_KEY_SEED must be 64 hex digits") from None
    if len(raw) != 32:
        raise ValueError("ACCORD_SIGNING_KEY_SEED must be 64 hex digits")
    return SigningKey.from_seed(raw)


def registered_keys(session: Session) -> list[AuditSigningKey]:
    """Every key that has signed, oldest first."""
    query = select(AuditSigningKey).order_by(AuditSigningKey.registered_at, AuditSigningKey.key_id)
    return list(session.scalars(query))


def register(session: Session, key: SigningKey, actor: Actor, at: datetime) -> bool:
    """Register `key` if new, recording a rotation when it replaces another; True if new."""
    if session.get(AuditSigningKey, key.key_id) is not None:
        return False
    known = registered_keys(session)
    inserted = session.scalar(
        insert_ignoring_conflicts(session, AuditSigningKey)
        .values(key_id=key.key_id, public_key=key.public_key, registered_at=iso(at))
        .returning(AuditSigningKey.key_id)
    )
    if inserted is None:  # a concurrent signer registered it first
        return False
    previous = known[-1].key_id if known else None
    if previous is not None:
        audit.append(
            session,
            actor,
            audit.EventRecord(
                AuditAction.SIGNING_KEY_ROTATED,
                "signing_key",
                key.key_id,
                details={
                    "key_id": key.key_id,
                    "previous_key_id": previous,
                    "public_key": b64url(key.public_key),
                    "algorithm": "EdDSA",
                },
            ),
            at,
        )
    return True


def public_keys(session: Session, current: SigningKey) -> dict[str, bytes]:
    """kid -> raw public key: the current key first, then retired ones, newest first."""
    keys = {current.key_id: current.public_key}
    for row in reversed(registered_keys(session)):
        keys.setdefault(row.key_id, bytes(row.public_key))
    return keys


def jwks_document(session: Session, current: SigningKey) -> dict[str, list[dict[str, str]]]:
    """The JWK Set of every tree-head key, current first."""
    return {"keys": [jwk(public) for public in public_keys(session, current).values()]}
