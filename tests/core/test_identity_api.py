"""Bearer-token verification through the HTTP API.

Every missing, malformed, forged, stale or misdirected token gets a 401 problem with
`WWW-Authenticate: Bearer` and a detail that never echoes the token. The app here accepts
HS256 (the development secret) and RS256/EdDSA with public keys configured by `kid`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx2 import Response
from jwt.algorithms import OKPAlgorithm

from service.app import create_app
from service.core.settings import Environment, Settings
from tests.support.api import Api
from tests.support.clock import MutableClock

ROUTE = "/v1/purposes"
ALGORITHMS = ["HS256", "RS256", "EdDSA"]
PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class KeyPair:
    kid: str
    alg: str
    private: PrivateKey

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def jwk(self) -> dict[str, Any]:
        assert isinstance(self.private, ed25519.Ed25519PrivateKey)
        public = OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}


@pytest.fixture(scope="module")
def keys() -> dict[str, KeyPair]:
    """Trusted keys (ed-1, rs-1 are configured; ed-2 is added later) and an attacker's keys."""
    return {
        "ed-1": KeyPair("ed-1", "EdDSA", ed25519.Ed25519PrivateKey.generate()),
        "ed-2": KeyPair("ed-2", "EdDSA", ed25519.Ed25519PrivateKey.generate()),
        "rs-1": KeyPair("rs-1", "RS256", rsa.generate_private_key(65537, 2048)),
        "evil-ed": KeyPair("evil-ed", "EdDSA", ed25519.Ed25519PrivateKey.generate()),
        "evil-rs": KeyPair("evil-rs", "RS256", rsa.generate_private_key(65537, 2048)),
        "evil-ec": KeyPair("evil-ec", "ES256", ec.generate_private_key(ec.SECP256R1())),
    }


@pytest.fixture
def settings(database_url: str, keys: dict[str, KeyPair]) -> Settings:
    return Settings(
        environment=Environment.TEST,
        database_url=database_url,
        sweep_interval_seconds=0,
        database_pool_size=5,
        jwt_algorithms=ALGORITHMS,
        jwt_public_keys={kid: keys[kid].public_pem for kid in ("ed-1", "rs-1")},
    )


@pytest.fixture
def app(settings: Settings, clock: MutableClock) -> FastAPI:
    return create_app(settings, clock=clock)


@contextmanager
def serving(settings: Settings, clock: MutableClock) -> Iterator[TestClient]:
    """Another app (a restart with changed settings) over the same database."""
    with TestClient(create_app(settings, clock=clock), raise_server_exceptions=False) as client:
        yield client


# --- building tokens -----------------------------------------------------------------------


def claims(
    settings: Settings,
    *,
    role: Any = "partner",
    org: Any = "uni-lab",
    drop: tuple[str, ...] = (),
    **overrides: Any,
) -> dict[str, Any]:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": f"{role}@{org}",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        settings.jwt_role_claim: role,
        settings.jwt_org_claim: org,
        **overrides,
    }
    for name in drop:
        del body[name]
    return body


def hs256(settings: Settings, payload: dict[str, Any], **headers: Any) -> str:
    assert settings.jwt_secret is not None
    secret = settings.jwt_secret.get_secret_value()
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


def signed(key: KeyPair, payload: dict[str, Any], kid: str | None = None, **headers: Any) -> str:
    return jwt.encode(
        payload, key.private, algorithm=key.alg, headers={"kid": kid or key.kid, **headers}
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(value: Any) -> str:
    return b64(json.dumps(value).encode())


def hmac_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """A compact JWS signed by hand (PyJWT refuses to HMAC with a PEM key)."""
    signing_input = f"{b64_json(header)}.{b64_json(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def call(client: TestClient, authorization: str | None) -> Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.get(ROUTE, headers=headers)


def bearer(client: TestClient, token: str) -> Response:
    return call(client, f"Bearer {token}")


def assert_401(response: Response, token: str | None = None) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["www-authenticate"] == "Bearer"
    body: dict[str, Any] = response.json()
    assert body["status"] == 401
    assert body["type"].endswith("/unauthenticated")
    assert body["title"]
    if token:
        assert token not in response.text
        for segment in token.split("."):
            if len(segment) >= 8:
                assert segment not in response.text
    return body


# --- the happy path ------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["partner", "steward", "ethics_reviewer", "auditor", "admin"])
def test_a_valid_token_of_each_role_is_accepted(world: Api, settings: Settings, role: str) -> None:
    org = "accord" if role == "admin" else "uni-lab"
    response = bearer(world.client, hs256(settings, claims(settings, role=role, org=org)))
    assert response.status_code == 200, response.text
    assert "research" in {p["code"] for p in response.json()}


@pytest.mark.parametrize("kid", ["ed-1", "rs-1"])
def test_asymmetric_tokens_are_verified_by_kid(
    world: Api, settings: Settings, keys: dict[str, KeyPair], kid: str
) -> None:
    response = bearer(world.client, signed(keys[kid], claims(settings)))
    assert response.status_code == 200, response.text


def test_lowercase_bearer_scheme_is_accepted(world: Api, settings: Settings) -> None:
    response = call(world.client, f"bearer {hs256(settings, claims(settings))}")
    assert response.status_code == 200, response.text


# --- missing or malformed credentials ------------------------------------------------------


def test_no_authorization_header(world: Api) -> None:
    body = assert_401(call(world.client, None))
    assert "bearer" in body["detail"].lower()


@pytest.mark.parametrize(
    "scheme", ["Basic {b}", "Token {t}", "Digest {t}", "{t}", "Bearer", "Bearer ", "JWT {t}"]
)
def test_non_bearer_schemes(world: Api, settings: Settings, scheme: str) -> None:
    token = hs256(settings, claims(settings))
    value = scheme.format(t=token, b=base64.b64encode(b"partner:secret").decode())
    assert_401(call(world.client, value), token)


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "not.a.jwt",
        "a.b.c.d.e",
        "....",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9..",
        b64(b"[1,2]") + "." + b64_json({"sub": "x"}) + ".c2ln",
        b64(b"\xff\xfe") + "." + b64_json({"sub": "x"}) + ".c2ln",
        "%00%ff.%%%.***",
    ],
)
def test_garbage_tokens(world: Api, token: str) -> None:
    assert_401(bearer(world.client, token), token)


# --- forged signatures and algorithms ------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
def test_alg_none_is_refused(world: Api, settings: Settings, alg: str, signature: str) -> None:
    payload = claims(settings, role="admin", org="accord")
    token = f"{b64_json({'alg': alg, 'typ': 'JWT'})}.{b64_json(payload)}.{signature}"
    assert_401(bearer(world.client, token), token)


def test_hs256_signed_with_a_wrong_secret(world: Api, settings: Settings) -> None:
    token = jwt.encode(claims(settings), "not-the-secret-" * 3, algorithm="HS256")
    body = assert_401(bearer(world.client, token), token)
    assert "signature" in body["detail"]


def test_tampered_payload_keeps_no_signature(world: Api, settings: Settings) -> None:
    token = hs256(settings, claims(settings, role="partner"))
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    decoded[settings.jwt_role_claim] = "admin"
    forged = f"{header}.{b64_json(decoded)}.{signature}"
    assert forged != token
    assert_401(bearer(world.client, forged), forged)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_hmac_algorithm_outside_the_allow_list(world: Api, settings: Settings, alg: str) -> None:
    assert settings.jwt_secret is not None
    token = jwt.encode(claims(settings), settings.jwt_secret.get_secret_value(), algorithm=alg)
    assert_401(bearer(world.client, token), token)


def test_asymmetric_algorithm_outside_the_allow_list(
    world: Api, settings: Settings, keys: dict[str, KeyPair]
) -> None:
    token = signed(keys["evil-ec"], claims(settings), kid="ed-1")
    assert_401(bearer(world.client, token), token)


@pytest.mark.parametrize("kid", ["ed-1", "rs-1"])
def test_hs256_with_a_public_key_as_secret_key_confusion(
    world: Api, settings: Settings, keys: dict[str, KeyPair], kid: str
) -> None:
    payload = claims(settings, role="admin", org="accord")
    token = hmac_token(
        {"alg": "HS256", "typ": "JWT", "kid": kid}, payload, keys[kid].public_pem.encode()
    )
    assert_401(bearer(world.client, token), token)


@pytest.mark.parametrize(
    ("signer", "alg", "kid"),
    [("evil-rs", "RS256", "ed-1"), ("evil-ed", "EdDSA", "rs-1")],
)
def test_algorithm_not_matching_the_kids_key_type(
    world: Api, settings: Settings, keys: dict[str, KeyPair], signer: str, alg: str, kid: str
) -> None:
    """An RS256 header naming an Ed25519 key (and the reverse) is a 401, not a server error."""
    assert keys[signer].alg == alg
    token = signed(keys[signer], claims(settings), kid=kid)
    assert_401(bearer(world.client, token), token)


def test_asymmetric_token_signed_by_another_key_under_a_trusted_kid(
    world: Api, settings: Settings, keys: dict[str, KeyPair]
) -> None:
    for signer, kid in (("evil-ed", "ed-1"), ("evil-rs", "rs-1")):
        token = signed(keys[signer], claims(settings), kid=kid)
        assert_401(bearer(world.client, token), token)


@pytest.mark.parametrize("kid", [None, "", "unknown-kid", 7, ["ed-1"], {"kid": "ed-1"}])
def test_asymmetric_token_with_a_missing_or_unknown_kid(
    world: Api, settings: Settings, keys: dict[str, KeyPair], kid: Any
) -> None:
    header: dict[str, Any] = {"alg": "EdDSA", "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{b64_json(header)}.{b64_json(claims(settings))}"
    private = keys["ed-1"].private
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    token = f"{signing_input}.{b64(private.sign(signing_input.encode()))}"
    assert_401(bearer(world.client, token), token)


# --- claims --------------------------------------------------------------------------------


def test_expired_token(world: Api, settings: Settings) -> None:
    now = int(time.time())
    token = hs256(settings, claims(settings, iat=now - 7200, nbf=now - 7200, exp=now - 3600))
    body = assert_401(bearer(world.client, token), token)
    assert "expired" in body["detail"]


def test_expiry_within_the_leeway_is_tolerated(world: Api, settings: Settings) -> None:
    now = int(time.time())
    assert settings.jwt_leeway_seconds >= 10
    token = hs256(settings, claims(settings, iat=now - 600, nbf=now - 600, exp=now - 5))
    assert bearer(world.client, token).status_code == 200


def test_token_not_yet_valid(world: Api, settings: Settings) -> None:
    now = int(time.time())
    future = now + settings.jwt_leeway_seconds + 300
    token = hs256(settings, claims(settings, nbf=future, exp=future + 600))
    body = assert_401(bearer(world.client, token), token)
    assert "not yet valid" in body["detail"]
    soon = hs256(settings, claims(settings, nbf=now + 5))
    assert bearer(world.client, soon).status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"},
        {"aud": ["someone-else", "another"]},
        {"aud": ""},
        {"iss": "https://evil.example"},
        {"iss": ""},
    ],
)
def test_wrong_audience_or_issuer(
    world: Api, settings: Settings, overrides: dict[str, Any]
) -> None:
    token = hs256(settings, claims(settings, **overrides))
    assert_401(bearer(world.client, token), token)


def test_audience_list_containing_accord_is_accepted(world: Api, settings: Settings) -> None:
    token = hs256(settings, claims(settings, aud=["other", settings.jwt_audience]))
    assert bearer(world.client, token).status_code == 200


@pytest.mark.parametrize("claim", ["exp", "sub", "iss", "aud", "role", "org"])
def test_missing_required_claim(world: Api, settings: Settings, claim: str) -> None:
    name = {"role": settings.jwt_role_claim, "org": settings.jwt_org_claim}.get(claim, claim)
    token = hs256(settings, claims(settings, drop=(name,)))
    assert_401(bearer(world.client, token), token)


@pytest.mark.parametrize(
    "overrides",
    [
        {"sub": ""},
        {"sub": 42},
        {"exp": "tomorrow"},
        {"nbf": "now"},
        {"iat": "now"},
        {"exp": float("inf")},
        {"exp": float("nan")},
        {"nbf": float("inf")},
    ],
)
def test_claims_of_the_wrong_type(
    world: Api, settings: Settings, overrides: dict[str, Any]
) -> None:
    token = hs256(settings, claims(settings, **overrides))
    assert_401(bearer(world.client, token), token)


@pytest.mark.parametrize(
    "role", ["superuser", "Partner", "ADMIN", "", " partner", ["admin"], {"role": "admin"}, 1, None]
)
def test_unknown_role_value(world: Api, settings: Settings, role: Any) -> None:
    token = hs256(settings, claims(settings, role=role))
    assert_401(bearer(world.client, token), token)


@pytest.mark.parametrize("org", ["", 42, ["uni-lab"], None])
def test_malformed_organisation_claim(world: Api, settings: Settings, org: Any) -> None:
    token = hs256(settings, claims(settings, org=org))
    assert_401(bearer(world.client, token), token)


def test_organisation_unknown_to_the_registry(world: Api, settings: Settings) -> None:
    for org in ("nowhere-org", "UNI-LAB", "uni-lab "):
        token = hs256(settings, claims(settings, org=org))
        assert_401(bearer(world.client, token), token)


def test_disabled_organisation_and_its_reenabling(world: Api, settings: Settings) -> None:
    token = hs256(settings, claims(settings, org="council"))
    assert bearer(world.client, token).status_code == 200
    world.ok(world.patch("/v1/organisations/council", "admin", "accord", json={"enabled": False}))
    body = assert_401(bearer(world.client, token), token)
    assert "disabled" in body["detail"]
    steward = hs256(settings, claims(settings, role="steward", org="council"))
    assert_401(bearer(world.client, steward), steward)
    world.ok(world.patch("/v1/organisations/council", "admin", "accord", json={"enabled": True}))
    assert bearer(world.client, token).status_code == 200


# --- header URLs are never followed --------------------------------------------------------


@dataclass
class JwksServer:
    """A local HTTP server that serves a JWKS and records every request it gets."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    port: int = 0
    status: int = 200  # anything else: an error page instead of the keys

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_jku_to_an_unreachable_url_is_not_followed(
    world: Api, settings: Settings, keys: dict[str, KeyPair]
) -> None:
    token = signed(keys["evil-rs"], claims(settings), kid="attacker-kid", jku="http://127.0.0.1:9/")
    started = time.monotonic()
    response = bearer(world.client, token)
    assert time.monotonic() - started < 2.0
    assert_401(response, token)


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_header_key_urls_are_never_fetched(
    world: Api,
    settings: Settings,
    keys: dict[str, KeyPair],
    jwks_server: JwksServer,
    header: str,
) -> None:
    attacker = keys["evil-ed"]
    jwks_server.keys = [attacker.jwk()]
    url = jwks_server.url("/attacker.json")
    for kid in ("evil-ed", "ed-1"):
        token = signed(
            attacker, claims(settings, role="admin", org="accord"), kid=kid, **{header: url}
        )
        assert_401(bearer(world.client, token), token)
    # A genuine token that also carries the header URL: the URL is still not fetched.
    genuine = signed(keys["ed-1"], claims(settings), **{header: url})
    assert bearer(world.client, genuine).status_code in (200, 401)
    assert jwks_server.requests == []


# --- key rotation --------------------------------------------------------------------------


def test_rotation_by_configuration_a_new_kid_works_and_a_removed_kid_stops(
    world: Api, settings: Settings, keys: dict[str, KeyPair], clock: MutableClock
) -> None:
    old, new = keys["ed-1"], keys["ed-2"]
    old_token, new_token = signed(old, claims(settings)), signed(new, claims(settings))
    assert bearer(world.client, old_token).status_code == 200
    assert_401(bearer(world.client, new_token), new_token)

    both = settings.model_copy(
        update={"jwt_public_keys": {old.kid: old.public_pem, new.kid: new.public_pem}}
    )
    with serving(both, clock) as client:
        assert bearer(client, new_token).status_code == 200
        assert bearer(client, old_token).status_code == 200

    only_new = settings.model_copy(update={"jwt_public_keys": {new.kid: new.public_pem}})
    with serving(only_new, clock) as client:
        assert bearer(client, new_token).status_code == 200
        assert_401(bearer(client, old_token), old_token)
        # The removed kid cannot be revived by signing with the new key under the old name.
        renamed = signed(new, claims(settings), kid=old.kid)
        assert_401(bearer(client, renamed), renamed)


def test_without_a_secret_hs256_is_refused_even_when_allow_listed(
    world: Api, settings: Settings, keys: dict[str, KeyPair], clock: MutableClock
) -> None:
    hs_token = hs256(settings, claims(settings))
    asymmetric_only = settings.model_copy(
        update={"jwt_secret": None, "jwt_algorithms": ["HS256", "EdDSA"]}
    )
    with serving(asymmetric_only, clock) as client:
        assert_401(bearer(client, hs_token), hs_token)
        confused = hmac_token(
            {"alg": "HS256", "kid": "ed-1"}, claims(settings), keys["ed-1"].public_pem.encode()
        )
        assert_401(bearer(client, confused), confused)
        assert bearer(client, signed(keys["ed-1"], claims(settings))).status_code == 200
        rs_token = signed(keys["rs-1"], claims(settings))
        assert_401(bearer(client, rs_token), rs_token)  # RS256 is no longer allow-listed


def test_rotation_by_jwks_a_newly_published_key_works_at_once(
    world: Api,
    settings: Settings,
    keys: dict[str, KeyPair],
    clock: MutableClock,
    jwks_server: JwksServer,
) -> None:
    first, second = keys["ed-1"], keys["ed-2"]
    jwks_server.keys = [first.jwk()]
    from_jwks = settings.model_copy(
        update={"jwt_public_keys": {}, "jwt_jwks_url": jwks_server.url("/jwks.json")}
    )
    with serving(from_jwks, clock) as client:
        assert bearer(client, signed(first, claims(settings))).status_code == 200
        unknown = signed(keys["evil-ed"], claims(settings))
        assert_401(bearer(client, unknown), unknown)

        jwks_server.keys = [first.jwk(), second.jwk()]  # the operator publishes a new key
        # Unknown kids refetch the JWKS at most once a second (so that a flood of made-up
        # kids cannot hammer the identity provider); the lookup above was one of them.
        time.sleep(1.1)
        response = bearer(client, signed(second, claims(settings)))
        assert response.status_code == 200, (response.text, jwks_server.requests)
    assert set(jwks_server.requests) == {"/jwks.json"}


def test_jwks_key_used_with_another_algorithm_is_a_401(
    world: Api,
    settings: Settings,
    keys: dict[str, KeyPair],
    clock: MutableClock,
    jwks_server: JwksServer,
) -> None:
    """An RS256 token naming a published Ed25519 kid: refused, never a server error."""
    jwks_server.keys = [keys["ed-1"].jwk()]
    from_jwks = settings.model_copy(
        update={"jwt_public_keys": {}, "jwt_jwks_url": jwks_server.url("/jwks.json")}
    )
    with serving(from_jwks, clock) as client:
        assert bearer(client, signed(keys["ed-1"], claims(settings))).status_code == 200
        token = signed(keys["evil-rs"], claims(settings), kid="ed-1")
        assert_401(bearer(client, token), token)


def test_jwks_unreachable_is_a_401_not_a_server_error(
    world: Api, settings: Settings, keys: dict[str, KeyPair], clock: MutableClock
) -> None:
    unreachable = settings.model_copy(
        update={"jwt_public_keys": {}, "jwt_jwks_url": "http://127.0.0.1:9/jwks.json"}
    )
    with serving(unreachable, clock) as client:
        token = signed(keys["ed-1"], claims(settings))
        assert_401(bearer(client, token), token)


@pytest.fixture
def silent_jwks() -> Iterator[str]:
    """The URL of a JWKS host that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/jwks.json"
    finally:
        listener.close()


def test_a_jwks_host_that_hangs_holds_up_neither_other_requests_nor_later_tokens(
    world: Api,
    settings: Settings,
    keys: dict[str, KeyPair],
    clock: MutableClock,
    silent_jwks: str,
) -> None:
    """Fetching keys happens off the event loop, and after a fetch fails, unknown kids are
    refused without another fetch for a while (each would wait for its own timeout)."""
    hanging = settings.model_copy(
        update={
            "jwt_public_keys": {},
            "jwt_jwks_url": silent_jwks,
            "jwt_jwks_timeout_seconds": 1.5,
        }
    )
    with serving(hanging, clock) as client, ThreadPoolExecutor(1) as pool:
        first = signed(keys["ed-1"], claims(settings), kid="made-up-1")
        started = time.monotonic()
        waiting = pool.submit(bearer, client, first)
        time.sleep(0.2)
        assert client.get("/healthz").status_code == 200
        assert time.monotonic() - started < 1.0, "the event loop waited for the JWKS host"
        assert_401(waiting.result(), first)
        assert time.monotonic() - started >= 1.5  # it did wait for its own fetch
        started = time.monotonic()
        second = signed(keys["ed-1"], claims(settings), kid="made-up-2")
        assert_401(bearer(client, second), second)
        assert time.monotonic() - started < 1.0, "a second fetch was waited for"


def test_tokens_arriving_while_a_jwks_fetch_hangs_wait_for_that_one_fetch(
    world: Api,
    settings: Settings,
    keys: dict[str, KeyPair],
    clock: MutableClock,
    silent_jwks: str,
) -> None:
    """Eight at once: all answered within about one timeout, not one timeout each."""
    hanging = settings.model_copy(
        update={"jwt_public_keys": {}, "jwt_jwks_url": silent_jwks, "jwt_jwks_timeout_seconds": 1.0}
    )
    tokens = [signed(keys["ed-1"], claims(settings), kid=f"made-up-{n}") for n in range(8)]
    with serving(hanging, clock) as client, ThreadPoolExecutor(8) as pool:
        started = time.monotonic()
        responses = list(pool.map(lambda token: bearer(client, token), tokens))
        elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [401] * 8
    assert elapsed < 3.0, f"{elapsed:.1f} s: the fetches were made one after another"


def test_after_a_failed_jwks_fetch_cached_keys_still_verify(
    world: Api,
    settings: Settings,
    keys: dict[str, KeyPair],
    clock: MutableClock,
    jwks_server: JwksServer,
) -> None:
    jwks_server.keys = [keys["ed-1"].jwk()]
    from_jwks = settings.model_copy(
        update={"jwt_public_keys": {}, "jwt_jwks_url": jwks_server.url("/jwks.json")}
    )
    with serving(from_jwks, clock) as client:
        assert bearer(client, signed(keys["ed-1"], claims(settings))).status_code == 200
        jwks_server.status = 503
        time.sleep(1.1)  # past the refetch cooldown: the made-up kid fetches, and fails
        made_up = signed(keys["ed-2"], claims(settings))
        assert_401(bearer(client, made_up), made_up)
        fetches = len(jwks_server.requests)
        assert fetches == 2
        # A token not seen before, under the cached kid: verified without a fetch.
        fresh = signed(keys["ed-1"], claims(settings, sub="another-service"))
        assert bearer(client, fresh).status_code == 200
        assert_401(bearer(client, made_up), made_up)
        assert len(jwks_server.requests) == fetches
