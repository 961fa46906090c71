"""Typed settings from environment variables; every service's settings extend `CommonSettings`.

Defaults are the local set-up made by `make infra-up`, so a developer needs no configuration.
Outside `local` and `test` the default database password is refused.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from closeloop_common.identifiers import TENANT_ID_PATTERN

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
    database_pool_size: int = Field(10, ge=1, le=100)
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="comma-separated host:port")
    kafka_topic_prefix: str = Field(
        "closeloop",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="first part of every topic name",
    )
    kafka_topic_partitions: int = Field(6, ge=1, le=1000, description="partitions per topic")
    kafka_replication_factor: int = Field(1, ge=1, le=10, description="replicas per topic")
    default_tenant_id: str = Field(
        "default", pattern=TENANT_ID_PATTERN, description="tenant of requests that name none"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    outbox_poll_interval_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        description="how often the outbox relay looks for rows it was not woken for",
    )
    outbox_batch_size: int = Field(200, ge=1, le=5000)
    consumer_max_attempts: int = Field(
        5,
        ge=1,
        le=100,
        description="tries of a failing handler before its message is dead-lettered",
    )

    @field_validator("database_url")
    @classmethod
    def _use_asyncpg(cls, url: str) -> str:
        return re.sub(r"^postgres(ql)?(\+asyncpg)?://", "postgresql+asyncpg://", url)

    @model_validator(mode="after")
    def _refuse_development_secrets(self) -> CommonSettings:
        if self.environment == "production" and ":closeloop@" in self.database_url:
            raise ValueError("DATABASE_URL uses the development password; set a real one")
        return self
