"""The notifier's settings (environment variables `NOTIFIER_*` besides the common ones)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from closeloop_common.emails import normalize_email
from closeloop_common.settings import CommonSettings
from closeloop_notifier.domain.tenant_settings import MessagingSettings

DEV_UNSUBSCRIBE_SECRET = "closeloop-development-unsubscribe-secret"
DEV_ERASURE_KEY = "closeloop-development-erasure-key"


class NotifierSettings(CommonSettings):
    notifier_smtp_host: str = "127.0.0.1"
    notifier_smtp_port: int = Field(1025, ge=1, le=65535)
    notifier_smtp_username: str | None = None
    notifier_smtp_password: SecretStr | None = None
    notifier_smtp_tls: Literal["none", "starttls", "implicit"] = Field(
        "none", description="none, STARTTLS after connecting, or implicit TLS (port 465)"
    )
    notifier_smtp_timeout_seconds: float = Field(
        15, gt=0, le=300, description="per SMTP command; a server this slow counts as down"
    )
    notifier_smtp_pool_size: int = Field(
        8, ge=1, le=100, description="SMTP connections kept open and reused, per process"
    )
    notifier_from_address: str = Field(
        "feedback@example.com", description="checked and normalised at start (one bare mailbox)"
    )
    notifier_from_name: str = "Customer Care"
    notifier_company_name: str = Field("Acme", description="the company named in messages")
    notifier_public_url: str = Field(
        "http://127.0.0.1:8004",
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="where customers reach the notifier: unsubscribe links start with it",
    )
    notifier_unsubscribe_secret: SecretStr = Field(
        SecretStr(DEV_UNSUBSCRIBE_SECRET),
        description="key of the unsubscribe links (keep it: changing it breaks links sent)",
    )
    notifier_erasure_key: SecretStr = Field(
        SecretStr(DEV_ERASURE_KEY),
        description="key of the hashes that keep erased respondents' addresses suppressed "
        "(keep it: changing it lets messages reach addresses erased before)",
    )
    notifier_webhook_allow_private: bool = Field(
        False,
        description="allow webhook targets on loopback and private networks (tests, on-premises "
        "chat servers); refused by default against server-side request forgery",
    )
    notifier_webhook_timeout_seconds: float = Field(10, gt=0, le=120)
    notifier_max_attempts: int = Field(6, ge=1, le=50)
    notifier_first_retry_seconds: float = Field(
        30, gt=0, description="doubles per attempt (with jitter), up to 1 h"
    )
    notifier_send_lease_seconds: float = Field(
        300,
        ge=5,
        le=86_400,
        description="how long a claimed message is left to its dispatcher before another one "
        "may send it; longer than any SMTP conversation (several commands times the timeout)",
    )
    notifier_default_messaging: MessagingSettings = Field(
        MessagingSettings(),
        description="JSON: the messaging settings of every tenant that has not stored its own "
        "(`PUT /v1/settings`), e.g. a shorter reply delay for a demo",
    )
    notifier_batch_size: int = Field(
        500,
        ge=1,
        le=5000,
        description="messages claimed, sent and recorded together (fewer transactions; a "
        "crash between sending and recording may send at most this many twice)",
    )

    @field_validator("notifier_from_address")
    @classmethod
    def _normalize_from_address(cls, address: str) -> str:
        return normalize_email(address)

    @model_validator(mode="after")
    def _production_secret(self) -> NotifierSettings:
        if (
            self.environment == "production"
            and self.notifier_unsubscribe_secret.get_secret_value() == DEV_UNSUBSCRIBE_SECRET
        ):
            raise ValueError("NOTIFIER_UNSUBSCRIBE_SECRET must be set in production")
        if (
            self.environment == "production"
            and self.notifier_erasure_key.get_secret_value() == DEV_ERASURE_KEY
        ):
            raise ValueError("NOTIFIER_ERASURE_KEY must be set in production")
        return self
