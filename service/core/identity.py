"""Bearer-token identity: who is calling, in which role, for which organisation."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import jwt
from jwt import PyJWKClient

from service.core.errors import Unauthenticated
from service.core.settings import Settings


class Role(StrEnum):
    PARTNER = "partner"
    STEWARD = "steward"
    ETHICS_REVIEWER = "ethics_reviewer"
    AUDITOR = "auditor"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    organisation_id: str

    def as_actor(self) -> dict[str, str]:
        return {
            "subject": self.subject,
            "role": self.role.value,
            "organisation": self.organisation_id,
        }


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting, and in which request: what every audit event records."""

    principal: Principal
    request_id: str | None


_HMAC_ALGORITHMS = {"HS256", "HS384", "HS512"}
_CACHE_SIZE = 10_000
# After the JWKS could not be fetched, unknown kids are refused without another fetch for
# this long: a flood of made-up kids while the identity provider is down must not queue
# one fetch (and its timeout) each.
_JWKS_BACKOFF_SECONDS = 5.0


class TokenVerifier:
    """Verifies bearer JWTs against the configured keys and claim rules.

    Only allow-listed algorithms are accepted; an HMAC algorithm is only accepted with the
    configured secret, never with a public key (the classic key-confusion attack). Header
    URLs (`jku`, `x5u`) are never followed: keys come from configuration or the JWKS URL.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._algorithms = list(settings.jwt_algorithms)
        self._verified: dict[str, tuple[Principal, float]] = {}
        # A key published in the JWKS works at once (an unknown kid refetches, at most once a
        # second); a key removed from it stops working within jwt_jwks_cache_seconds.
        self._jwks = (
            PyJWKClient(
                settings.jwt_jwks_url,
                lifespan=settings.jwt_jwks_cache_seconds,
                cooldown_duration=1.0,
                timeout=settings.jwt_jwks_timeout_seconds,
            )
            if settings.jwt_jwks_url
            else None
        )
        self._jwks_quiet_until = 0.0
        self._jwks_lock = threading.Lock()

    @property
    def may_fetch(self) -> bool:
        """Verifying a token not seen before may fetch the JWKS (blocking I/O)."""
        return self._jwks is not None

    def remembered(self, token: str) -> Principal | None:
        """The principal of a token verified before and not yet expired, else None."""
        cached = self._verified.get(token)
        if cached is not None and time.time() < cached[1]:
            return cached[0]
        return None

    def _key_for(self, token: str, header: dict[str, Any]) -> Any:
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise Unauthenticated("token algorithm is not accepted")
        if alg in _HMAC_ALGORITHMS:
            secret = self._settings.jwt_secret
            if secret is None:
                raise Unauthenticated("token algorithm is not accepted")
            return secret.get_secret_value()
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token has no key id")
        if kid in self._settings.jwt_public_keys:
            return self._settings.jwt_public_keys[kid]
        if self._jwks is not None:
            return self._jwks_key(self._jwks, kid)
        raise Unauthenticated("token key id is unknown")

    def _jwks_key(self, jwks: PyJWKClient, kid: str) -> Any:
        # One lookup at a time: requests that arrive while a fetch hangs wait for it, and
        # then see its outcome (the backoff), rather than each fetching in turn.
        with self._jwks_lock:
            if time.monotonic() < self._jwks_quiet_until:
                # The last fetch failed: only the keys still cached, nothing fetched.
                cached = jwks.jwk_set_cache.get() if jwks.jwk_set_cache is not None else None
                for key in cached.keys if cached is not None else ():
                    if key.key_id == kid and key.public_key_use in ("sig", None):
                        return key.key
                raise Unauthenticated("token key id is unknown")
            try:
                return jwks.get_signing_key(kid).key
            except jwt.PyJWKClientConnectionError as exc:
                self._jwks_quiet_until = time.monotonic() + _JWKS_BACKOFF_SECONDS
                raise Unauthenticated("token key id is unknown") from exc
            except jwt.PyJWKClientError as exc:
                raise Unauthenticated("token key id is unknown") from exc

    def known_caller(self, token: str) -> str | None:
        """ "organisation/subject" of a token verified before and not expired, else None."""
        principal = self.remembered(token)
        return None if principal is None else f"{principal.organisation_id}/{principal.subject}"

    def verify(self, token: str) -> Principal:
        """The token's principal; verified tokens are remembered until they expire."""
        cached = self.remembered(token)
        if cached is not None:
            return cached
        principal, expires = self._verify(token)
        if len(self._verified) >= _CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (principal, expires)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("malformed token") from exc
        key = self._key_for(token, header)
        role_claim, org_claim = self._settings.jwt_role_claim, self._settings.jwt_org_claim
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[header["alg"]],
                audience=self._settings.jwt_audience,
                issuer=self._settings.jwt_issuer,
                leeway=self._settings.jwt_leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"invalid token: {_reason(exc)}") from exc
        except (jwt.PyJWTError, TypeError, ValueError) as exc:
            # e.g. an algorithm that does not fit the key named by `kid`
            raise Unauthenticated("token algorithm does not match its key") from exc
        role, organisation = claims.get(role_claim), claims.get(org_claim)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("token has no subject")
        if not isinstance(role, str) or role not in {r.value for r in Role}:
            raise Unauthenticated(f"token has no valid `{role_claim}` claim")
        if not isinstance(organisation, str) or not organisation:
            raise Unauthenticated(f"token has no `{org_claim}` claim")
        principal = Principal(subject=subject, role=Role(role), organisation_id=organisation)
        return principal, float(claims["exp"])


def _reason(exc: jwt.InvalidTokenError) -> str:
    """A short reason that never echoes token contents."""
    return {
        jwt.InvalidAudienceError: "wrong audience",
        jwt.InvalidIssuerError: "wrong issuer",
        jwt.ImmatureSignatureError: "not yet valid",
        jwt.MissingRequiredClaimError: "a required claim is missing",
        jwt.InvalidSignatureError: "signature does not verify",
        jwt.DecodeError: "malformed token",
    }.get(type(exc), "rejected")


def mint_token(
    settings: Settings,
    *,
    subject: str,
    role: Role,
    organisation_id: str,
    ttl_seconds: int = 3600,
    extra: dict[str, Any] | None = None,
) -> str:
    """A development token signed with the HS256 secret."""
    if settings.jwt_secret is None:
        raise RuntimeError("no ACCORD_JWT_SECRET configured to mint development tokens")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        settings.jwt_role_claim: role.value,
        settings.jwt_org_claim: organisation_id,
        **(extra or {}),
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
