"""Typed settings from environment variables; every service's settings extend `CommonSettings`.

Defaults are the local set-up made by `make infra-up`, so a developer needs no configuration.
Outside `local` and `test` the default database password is refused.

Authentication (`AUTH_*`): tokens are verified with exactly one key source, a PEM public key
(`AUTH_PUBLIC_KEY` or `AUTH_PUBLIC_KEY_FILE`) or an identity provider's JWKS (`AUTH_JWKS_URL`).
None configured is allowed but fails closed: every protected request is refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Asymmetric JWS algorithms only: a shared secret (HS*) would let every service mint tokens, and
# `none` is no signature at all.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"EdDSA", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
LOCAL_DATABASE_URL = "postgresql+asyncpg://closeloop:closeloop@127.0.0.1:5432/closeloop"


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    environment: Literal["local", "test", "production"] = Field(
        "local", description="local and test allow the development defaults; production does not"
    )
    database_url: str = Field(
        LOCAL_DATABASE_URL,
        description="PostgreSQL URL; postgres:// and postgresql:// are accepted and use asyncpg",
    )
    database_pool_size: int = Field(
        10, ge=1, le=100, description="connections per process for HTTP requests"
    )
    database_worker_pool_size: int = Field(
        5,
        ge=2,
        le=100,
        description="connections per process for consumers and workers (a pool of their own, so "
        "a burst of HTTP reads cannot starve them)",
    )
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="comma-separated host:port")
    kafka_topic_prefix: str = Field(
        "closeloop",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="first part of every topic name",
    )
    kafka_topic_partitions: int = Field(6, ge=1, le=1000, description="partitions per topic")
    kafka_replication_factor: int = Field(1, ge=1, le=10, description="replicas per topic")
    kafka_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        le=10,
        description="replicas that must have a write before it is acknowledged (acks=all); "
        "unset: 1 for a replication factor below 3, else 2",
    )
    auth_public_key: str | None = Field(
        None, description="PEM public key that verifies bearer tokens (self-hosted set-ups)"
    )
    auth_public_key_file: Path | None = Field(
        None, description="path of a PEM public key file, read at start"
    )
    auth_jwks_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="JWKS URL of your identity provider (Keycloak, Auth0, Entra ID)",
    )
    auth_algorithms: frozenset[str] = Field(
        frozenset({"EdDSA"}),
        min_length=1,
        description='JSON list of accepted JWS algorithms, asymmetric only; ["RS256"] for most '
        "identity providers",
    )
    auth_issuer: str = Field("closeloop", min_length=1, description="required `iss` of tokens")
    auth_audience: str = Field("closeloop", min_length=1, description="required `aud` of tokens")
    auth_tenant_claim: str = Field(
        "tenant", min_length=1, description="the token claim that names the tenant"
    )
    auth_revoked_token_ids: frozenset[str] = Field(
        frozenset(), description="JSON list of revoked token ids (`jti`)"
    )
    auth_revoked_token_ids_file: Path | None = Field(
        None, description="file of revoked token ids, one per line; re-read when it changes"
    )
    auth_leeway_seconds: float = Field(
        30, ge=0, le=300, description="clock skew allowed when checking exp and iat"
    )
    auth_jwks_cache_seconds: float = Field(
        300, gt=0, le=86400, description="how long fetched JWKS keys are used before a refetch"
    )
    auth_jwks_min_refresh_seconds: float = Field(
        10,
        ge=0,
        le=3600,
        description="at most one JWKS fetch per this many seconds (also for unknown key ids)",
    )
    tenants_file: Path | None = Field(
        None, description="per-tenant settings (TOML or JSON); environment settings are defaults"
    )
    max_request_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="larger request bodies are refused with 413"
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="serve /metrics on this port instead of the API port (unset: the API port)",
    )
    metrics_host: str = Field("127.0.0.1", description="address the metrics port binds to")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        pattern=r"^https?://",
        description="OTLP/HTTP collector base URL (traces go to <url>/v1/traces); unset: tracing "
        "off, nothing recorded or exported",
    )
    otel_service_name: str | None = Field(
        None, min_length=1, description="service.name of the spans (unset: closeloop-<service>)"
    )
    otel_traces_sampler_arg: float = Field(
        1.0,
        ge=0,
        le=1,
        description="share of the traces starting in this service that are sampled; a trace "
        "that arrives sampled (traceparent) stays sampled (parent-based)",
    )
    outbox_poll_interval_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        description="how often the outbox relay looks for rows it was not woken for",
    )
    outbox_batch_size: int = Field(1000, ge=1, le=10_000, description="events per relay send")
    outbox_retention_hours: float = Field(
        168, gt=0, description="published outbox rows are deleted after this long"
    )
    inbox_retention_days: float = Field(
        30,
        ge=15,
        description="handled-event ids are kept this long; must outlast the topics' retention "
        "(14 days), since an event can be redelivered while the broker holds it",
    )
    consumer_max_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="tries of a failing handler before its message is dead-lettered",
    )
    consumer_batch_max_records: int = Field(
        5000, ge=1, le=20_000, description="records handled in one transaction at most"
    )
    consumer_batch_linger_ms: int = Field(
        0,
        ge=0,
        le=5000,
        description="how long a consumer waits for more records to fill a short batch",
    )

    @field_validator("database_url")
    @classmethod
    def _use_asyncpg(cls, url: str) -> str:
        return re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql+asyncpg://", url)

    @field_validator("auth_algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: frozenset[str]) -> frozenset[str]:
        if refused := sorted(algorithms - ASYMMETRIC_ALGORITHMS):
            allowed = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
            raise ValueError(f"not an accepted algorithm: {refused}; choose from {allowed}")
        return algorithms

    @model_validator(mode="after")
    def _one_key_source(self) -> CommonSettings:
        sources = [self.auth_public_key, self.auth_public_key_file, self.auth_jwks_url]
        if sum(source is not None for source in sources) > 1:
            raise ValueError(
                "set only one of AUTH_PUBLIC_KEY, AUTH_PUBLIC_KEY_FILE and AUTH_JWKS_URL"
            )
        return self

    @model_validator(mode="after")
    def _min_insync_within_replication(self) -> CommonSettings:
        if (
            self.kafka_min_insync_replicas is not None
            and self.kafka_min_insync_replicas > self.kafka_replication_factor
        ):
            # No write could ever be acknowledged: every produce would fail.
            raise ValueError(
                f"KAFKA_MIN_INSYNC_REPLICAS={self.kafka_min_insync_replicas} exceeds "
                f"KAFKA_REPLICATION_FACTOR={self.kafka_replication_factor}"
            )
        return self

    @model_validator(mode="after")
    def _refuse_development_secrets(self) -> CommonSettings:
        if self.environment == "production" and ":closeloop@" in self.database_url:
            raise ValueError("DATABASE_URL uses the development password; set a real one")
        if self.environment == "production" and (self.auth_jwks_url or "").startswith("http:"):
            raise ValueError("AUTH_JWKS_URL must use https in production")
        return self
