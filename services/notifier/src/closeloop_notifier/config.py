"""The notifier's settings (environment variables `NOTIFIER_*` besides the common ones)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from closeloop_common.emails import normalize_email
from closeloop_common.settings import CommonSettings


class NotifierSettings(CommonSettings):
    notifier_smtp_host: str = "127.0.0.1"
    notifier_smtp_port: int = Field(1025, ge=1, le=65535)
    notifier_smtp_username: str | None = None
    notifier_smtp_password: SecretStr | None = None
    notifier_smtp_starttls: bool = False
    notifier_smtp_timeout_seconds: float = Field(
        15, gt=0, le=300, description="per SMTP command; a server this slow counts as down"
    )
    notifier_from_address: str = Field(
        "feedback@example.com", description="checked and normalised at start (one bare mailbox)"
    )
    notifier_from_name: str = "Customer Care"
    notifier_company_name: str = Field("Acme", description="the company named in messages")
    notifier_max_attempts: int = Field(6, ge=1, le=50)
    notifier_first_retry_seconds: float = Field(
        30, gt=0, description="doubles per attempt, up to 1 h"
    )
    notifier_send_lease_seconds: float = Field(
        300,
        ge=5,
        le=86_400,
        description="how long a claimed message is left to its dispatcher before another one "
        "may send it; longer than any SMTP conversation (several commands times the timeout)",
    )

    @field_validator("notifier_from_address")
    @classmethod
    def _normalize_from_address(cls, address: str) -> str:
        return normalize_email(address)
