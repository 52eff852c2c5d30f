"""Configuration from ``ACCORD_*`` environment variables (one pydantic-settings class)."""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "accord-development-jwt-secret-change-me"  # noqa: S105
DEV_PSEUDONYM_KEY = "accord-development-pseudonym-key-change-me"
DEV_SIGNING_SEED = "0" * 64
MIN_SECRET_BYTES = 32


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class PolicyEngineKind(StrEnum):
    EMBEDDED = "embedded"
    OPA = "opa"


class Settings(BaseSettings):
    """Every setting Accord reads; the README lists them."""

    model_config = SettingsConfigDict(env_prefix="ACCORD_", extra="ignore", frozen=True)

    environment: Environment = Field(
        Environment.DEVELOPMENT, description="development, test or production"
    )
    database_url: str = Field(
        "sqlite:///./var/accord.db", description="SQLAlchemy URL (sqlite or postgresql+psycopg)"
    )
    database_pool_size: int = Field(20, ge=1, description="database connections per process")

    jwt_issuer: str = Field("accord-dev", description="required `iss` of bearer tokens")
    jwt_audience: str = Field("accord", description="required `aud` of bearer tokens")
    jwt_algorithms: list[str] = Field(
        ["HS256"], description="allow-list of accepted JWT algorithms"
    )
    jwt_secret: SecretStr | None = Field(
        SecretStr(DEV_JWT_SECRET), description="HS256 secret (development only)"
    )
    jwt_public_keys: dict[str, str] = Field(
        default_factory=dict, description="kid -> PEM public key for RS/ES/EdDSA tokens"
    )
    jwt_jwks_url: str | None = Field(None, description="JWKS URL; keys are selected by `kid`")
    jwt_jwks_cache_seconds: float = Field(
        60.0, gt=0, description="how long fetched JWKS keys are trusted before refetching"
    )
    jwt_jwks_timeout_seconds: float = Field(
        5.0, gt=0, le=60, description="how long a JWKS fetch may take before it is given up"
    )
    jwt_role_claim: str = Field("role", description="claim holding the caller's role")
    jwt_org_claim: str = Field("org", description="claim holding the caller's organisation id")
    jwt_leeway_seconds: int = Field(30, ge=0, le=300, description="clock skew tolerated")

    operator_org: str = Field(
        "accord", description="organisation id of the operator (its admins' `org` claim)"
    )
    pseudonym_key: SecretStr = Field(
        SecretStr(DEV_PSEUDONYM_KEY), description="HMAC key turning subject ids into pseudonyms"
    )
    signing_key_seed: SecretStr = Field(
        SecretStr(DEV_SIGNING_SEED), description="hex Ed25519 seed that signs audit tree heads"
    )

    policy_engine: PolicyEngineKind = Field(
        PolicyEngineKind.EMBEDDED, description="embedded (regorus) or opa"
    )
    policy_dir: Path = Field(
        Path(__file__).resolve().parents[2] / "policies", description="the Rego bundle"
    )
    opa_url: str = Field("http://127.0.0.1:8181", description="OPA server for policy_engine=opa")
    opa_upload_policies: bool = Field(
        False,
        description="push policies/ to OPA's policy API (off when OPA loads them as a bundle)",
    )
    opa_timeout_seconds: float = Field(2.0, gt=0, description="OPA request timeout")
    policy_timeout_seconds: float = Field(5.0, gt=0, description="deadline for one evaluation")

    tree_head_interval_seconds: float = Field(
        60.0, ge=0, description="seconds between signed audit tree heads; 0 disables"
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="largest request body accepted (413 beyond)"
    )
    rate_limit_per_second: float = Field(
        200.0,
        ge=0,
        description=(
            "sustained requests per second per client (the caller of an already verified "
            "token, else the address); 0 disables"
        ),
    )
    rate_limit_burst: int = Field(400, ge=1, description="requests a client may burst")
    log_level: str = Field("INFO", description="log level of the JSON logs on stdout")
    decision_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="threads that decide, per process (each decides the requests waiting "
        "together; one is fastest on SQLite and PostgreSQL, see bench/README.md)",
    )
    decision_writers: int = Field(
        1,
        ge=1,
        le=8,
        description="threads that record decisions, per process (more let a group's "
        "transaction start while the one before commits; one, with larger groups, is "
        "fastest on SQLite and PostgreSQL, see bench/README.md)",
    )
    max_batch_subjects: int = Field(
        10_000, ge=1, le=100_000, description="subjects in one decision request"
    )
    sweep_interval_seconds: float = Field(
        60.0, ge=0, description="lifecycle sweep (activation, expiry) interval; 0 disables"
    )
    policy_follow_seconds: float = Field(
        5.0,
        ge=0,
        description="how often a process takes a policy revision another one loaded; 0: never",
    )

    @field_validator("signing_key_seed")
    @classmethod
    def _seed_is_an_ed25519_seed(cls, value: SecretStr) -> SecretStr:
        seed = value.get_secret_value()
        if len(seed) != 64 or any(c not in "0123456789abcdefABCDEF" for c in seed):
            raise ValueError("ACCORD_SIGNING_KEY_SEED must be 64 hex characters (32 bytes)")
        return value

    @model_validator(mode="after")
    def _refuse_development_secrets_in_production(self) -> Settings:
        if self.environment is not Environment.PRODUCTION:
            return self
        problems = []
        if self.jwt_secret is not None and self.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
            problems.append("ACCORD_JWT_SECRET is the development secret")
        if self.pseudonym_key.get_secret_value() == DEV_PSEUDONYM_KEY:
            problems.append("ACCORD_PSEUDONYM_KEY is the development key")
        if self.signing_key_seed.get_secret_value() == DEV_SIGNING_SEED:
            problems.append("ACCORD_SIGNING_KEY_SEED is the development seed")
        # RFC 7518 3.2: an HS256 key of at least 256 bits; the pseudonym key likewise.
        for name, secret in (
            ("ACCORD_JWT_SECRET", self.jwt_secret),
            ("ACCORD_PSEUDONYM_KEY", self.pseudonym_key),
        ):
            if secret is not None and len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                problems.append(f"{name} is shorter than {MIN_SECRET_BYTES} bytes")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    @cached_property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
