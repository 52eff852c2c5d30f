"""Ed25519 signatures over audit-log tree heads, and the JWKS that publishes the keys.

Signed tree head payload (what the signature covers), `tree_head_payload`:

    RFC 8785 canonical JSON of
    {"log": "accord", "root": <base64url, no padding, of the 32-byte root>,
     "size": <number of leaves>, "timestamp": <RFC 3339 UTC string, as stored>}

    e.g. {"log":"accord","root":"bjQLnP-zepicpUTmu3gKLHiQHT-zNzh2hRGjBhevoB0",
          "size":1,"timestamp":"2025-01-01T00:00:00Z"}

Any JCS implementation rebuilds these bytes from the head's fields, so a verifier needs
only the public key (from the JWKS, matched by `kid`) and the head. The "log" member binds
the signature to this log, so a head cannot be replayed as another log's.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from service.audit.canonical import canonical_json

__all__ = [
    "LOG_NAME",
    "SigningKey",
    "b64url",
    "jwk",
    "jwks",
    "key_id",
    "tree_head_payload",
    "verify",
    "verify_tree_head",
]

LOG_NAME = "accord"
_ROOT_SIZE = 32


def b64url(data: bytes) -> str:
    """Return base64url without padding (RFC 7515 §2), as used in JWKs and payloads."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_id(public_key: bytes) -> str:
    """Return the key id: the first 16 hex digits of SHA-256 of the raw public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def tree_head_payload(size: int, root: bytes, timestamp: str) -> bytes:
    """Return the canonical bytes a tree-head signature covers (see the module docstring)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("size must be a non-negative integer")
    if not isinstance(root, bytes) or len(root) != _ROOT_SIZE:
        raise ValueError(f"root must be {_ROOT_SIZE} bytes")
    if not isinstance(timestamp, str) or not timestamp:
        raise ValueError("timestamp must be a non-empty string")
    return canonical_json(
        {"size": size, "root": b64url(root), "timestamp": timestamp, "log": LOG_NAME}
    )


class SigningKey:
    """The service's Ed25519 private key; signs tree heads. Never logged or serialised."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw
        )
        self.key_id: str = key_id(self.public_key)

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        """Build a key from its 32-byte RFC 8032 seed (the raw private key)."""
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls) -> SigningKey:
        """Build a fresh random key."""
        return cls(Ed25519PrivateKey.generate())

    def sign(self, payload: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of payload."""
        return self._private.sign(payload)

    def jwk(self) -> dict[str, str]:
        """Return the public JWK of this key."""
        return jwk(self.public_key)

    def __repr__(self) -> str:
        # Only the public identity: a repr must never leak the seed into logs.
        return f"SigningKey(kid={self.key_id!r})"


def verify(public_key: bytes, payload: bytes, signature: bytes) -> bool:
    """Return True iff signature is a valid Ed25519 signature; never raises on bad input."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, payload)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_tree_head(
    public_key: bytes, size: int, root: bytes, timestamp: str, signature: bytes
) -> bool:
    """Return True iff signature signs this tree head; never raises on bad input."""
    try:
        payload = tree_head_payload(size, root, timestamp)
    except ValueError:
        return False
    return verify(public_key, payload, signature)


def jwk(public_key: bytes) -> dict[str, str]:
    """Return the RFC 8037 JWK of a raw 32-byte Ed25519 public key."""
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url(public_key),
        "kid": key_id(public_key),
        "alg": "EdDSA",
        "use": "sig",
    }


def jwks(public_keys: Iterable[bytes]) -> dict[str, list[dict[str, str]]]:
    """Return a JWK Set of the given public keys (current and retired, for rotation)."""
    return {"keys": [jwk(k) for k in public_keys]}
