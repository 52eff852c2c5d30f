"""Ed25519 tree-head signatures and the published JWKS."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service.audit.signing import (
    SigningKey,
    b64url,
    jwk,
    jwks,
    key_id,
    tree_head_payload,
    verify,
    verify_tree_head,
)

# RFC 8032 §7.1, TEST 1 (empty message).
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")
TIME = "2025-03-01T12:00:00Z"


def test_rfc8032_test_1() -> None:
    key = SigningKey.from_seed(RFC8032_SECRET)
    assert key.public_key == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_SIGNATURE  # Ed25519 is deterministic
    assert verify(RFC8032_PUBLIC, b"", RFC8032_SIGNATURE)
    assert not verify(RFC8032_PUBLIC, b"\x00", RFC8032_SIGNATURE)


def test_key_id_is_sha256_prefix_of_raw_public_key() -> None:
    key = SigningKey.from_seed(RFC8032_SECRET)
    assert key.key_id == hashlib.sha256(RFC8032_PUBLIC).hexdigest()[:16]
    assert key.key_id == key_id(RFC8032_PUBLIC)
    assert len(key.key_id) == 16
    assert RFC8032_SECRET.hex() not in repr(key)
    assert key.key_id in repr(key)


def test_tree_head_payload_is_canonical_json() -> None:
    payload = tree_head_payload(8, ROOT, TIME)
    assert payload == (
        b'{"log":"accord","root":"XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz-Nw7_RgQyg",'
        b'"size":8,"timestamp":"2025-03-01T12:00:00Z"}'
    )
    decoded = json.loads(payload)
    assert base64.urlsafe_b64decode(decoded["root"] + "=") == ROOT


@pytest.mark.parametrize(
    ("size", "root", "timestamp"),
    [
        (-1, ROOT, TIME),
        (True, ROOT, TIME),
        (1.0, ROOT, TIME),
        (2**53, ROOT, TIME),  # beyond JSON's exact integers
        (1, ROOT[:31], TIME),
        (1, ROOT.hex(), TIME),
        (1, ROOT, ""),
        (1, ROOT, None),
    ],
)
def test_tree_head_payload_rejects_bad_fields(
    size: object, root: object, timestamp: object
) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by field
        tree_head_payload(size, root, timestamp)  # type: ignore[arg-type]


def test_sign_verify_round_trip() -> None:
    key = SigningKey.generate()
    signature = key.sign(tree_head_payload(8, ROOT, TIME))
    assert len(signature) == 64
    assert verify(key.public_key, tree_head_payload(8, ROOT, TIME), signature)
    assert verify_tree_head(key.public_key, 8, ROOT, TIME, signature)


def test_tampered_heads_fail() -> None:
    key = SigningKey.from_seed(bytes(range(32)))
    signature = key.sign(tree_head_payload(8, ROOT, TIME))
    other_root = bytes([ROOT[0] ^ 1]) + ROOT[1:]
    assert not verify_tree_head(key.public_key, 9, ROOT, TIME, signature)
    assert not verify_tree_head(key.public_key, 7, ROOT, TIME, signature)
    assert not verify_tree_head(key.public_key, 8, other_root, TIME, signature)
    assert not verify_tree_head(key.public_key, 8, ROOT, "2025-03-01T12:00:01Z", signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify_tree_head(key.public_key, 8, ROOT, TIME, flipped)


def test_wrong_key_fails() -> None:
    key = SigningKey.from_seed(bytes(range(32)))
    other = SigningKey.from_seed(bytes(range(1, 33)))
    assert key.key_id != other.key_id
    payload = tree_head_payload(8, ROOT, TIME)
    assert not verify(other.public_key, payload, key.sign(payload))


@pytest.mark.parametrize(
    ("public_key", "payload", "signature"),
    [
        (RFC8032_PUBLIC[:31], b"", RFC8032_SIGNATURE),
        (RFC8032_PUBLIC, b"", RFC8032_SIGNATURE[:63]),
        (RFC8032_PUBLIC, b"", bytes(64)),
        (RFC8032_PUBLIC, b"", None),
        (None, b"", RFC8032_SIGNATURE),
        (RFC8032_PUBLIC, None, RFC8032_SIGNATURE),
        (RFC8032_PUBLIC, "", RFC8032_SIGNATURE),
        (RFC8032_PUBLIC.hex(), b"", RFC8032_SIGNATURE),
        (b"\xff" * 32, b"", RFC8032_SIGNATURE),  # not a curve point
    ],
)
def test_verify_never_raises(public_key: object, payload: object, signature: object) -> None:
    assert verify(public_key, payload, signature) is False  # type: ignore[arg-type]


def test_verify_tree_head_never_raises() -> None:
    assert not verify_tree_head(RFC8032_PUBLIC, -1, ROOT, TIME, RFC8032_SIGNATURE)
    assert not verify_tree_head(RFC8032_PUBLIC, 1, b"short", TIME, RFC8032_SIGNATURE)


def test_from_seed_rejects_bad_seeds() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey.from_seed(b"\x00" * 31)
    with pytest.raises(ValueError, match="32 bytes"):
        SigningKey.from_seed(RFC8032_SECRET.hex())  # type: ignore[arg-type]


def test_jwk_fields() -> None:
    key = SigningKey.from_seed(RFC8032_SECRET)
    assert (
        key.jwk()
        == jwk(RFC8032_PUBLIC)
        == {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            "kid": key.key_id,
            "alg": "EdDSA",
            "use": "sig",
        }
    )
    assert "d" not in key.jwk()  # never the private part
    # The published x decodes back to a key that verifies the vector.
    x = base64.urlsafe_b64decode(key.jwk()["x"] + "=")
    Ed25519PublicKey.from_public_bytes(x).verify(RFC8032_SIGNATURE, b"")
    with pytest.raises(ValueError, match="32 bytes"):
        jwk(RFC8032_PUBLIC[:31])


def test_jwks_lists_every_key_for_rotation() -> None:
    keys = [SigningKey.from_seed(bytes([i]) * 32) for i in range(3)]
    document = jwks(k.public_key for k in keys)
    assert [k["kid"] for k in document["keys"]] == [k.key_id for k in keys]
    assert jwks([]) == {"keys": []}
    json.dumps(document)  # serialisable as is


def test_b64url_has_no_padding() -> None:
    assert b64url(b"\xfb\xff") == "-_8"
    assert b64url(b"") == ""
